"""ConverseStream events turned into OpenAI `chat.completion.chunk` dicts, one decoded frame at a time.

Pure: the adapter owns the socket and the binary framing (`eventstream.py`); this module sees decoded
messages. Events: messageStart, contentBlockStart (tool use), contentBlockDelta (text, tool input pieces,
reasoning), contentBlockStop, messageStop (stop reason) and metadata (usage). Failures arrive as frames with
`:message-type: exception`; they raise, so an attempt that fails before any content can still fail over.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluicegate.errors import GatewayError, RateLimitError, UpstreamError, UpstreamRequestError
from sluicegate.providers.base import Usage
from sluicegate.providers.bedrock import converse
from sluicegate.providers.bedrock.eventstream import Message

Chunk = dict[str, Any]


class StreamTranslator:
    def __init__(self, model: str, *, completion_id: str, created: int) -> None:
        self._model = model
        self._id = completion_id
        self._created = created
        #: Converse block index -> OpenAI tool-call index
        self._tools: dict[int, int] = {}
        self._announced = False
        self._stopped = False
        self._usage: Usage | None = None
        self._finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        """Whether messageStop and the usage metadata both arrived: otherwise the stream was cut short."""
        return self._stopped and self._usage is not None

    def feed(self, message: Message) -> list[Chunk]:
        if message.message_type != "event":
            raise stream_error(message)
        try:
            data = msgspec.json.decode(message.payload) if message.payload else {}
            chunks = self._event(message.event_type, data)
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            raise UpstreamError(
                f"Bedrock sent a malformed '{message.event_type}' event", code="upstream_malformed_response"
            ) from None
        if chunks and not self._announced:
            # The role chunk waits for real output, so an exception frame right after messageStart can fail over.
            self._announced = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    def finish(self) -> list[Chunk]:
        """The closing usage chunk, shaped like OpenAI's `include_usage` one."""
        usage = self._usage or Usage()
        return [{**self._base(), "choices": [], "usage": usage.to_openai()}]

    def _event(self, kind: str, data: dict[str, Any]) -> list[Chunk]:
        if kind == "contentBlockStart":
            tool = (data.get("start") or {}).get("toolUse")
            if tool is None:
                return []
            position = len(self._tools)
            self._tools[data["contentBlockIndex"]] = position
            call = {"id": tool["toolUseId"], "type": "function", "function": {"name": tool["name"], "arguments": ""}}
            return [self._chunk({"tool_calls": [{"index": position, **call}]})]
        if kind == "contentBlockDelta":
            return self._delta(data["contentBlockIndex"], data["delta"])
        if kind == "messageStop":
            self._stopped = True
            self._finish_reason = converse.finish_reason(data.get("stopReason"))
            if self._tools and self._finish_reason == "stop":
                self._finish_reason = "tool_calls"
            return [self._chunk({}, self._finish_reason)]
        if kind == "metadata":
            self._usage = converse.usage(data.get("usage") or {})
        # messageStart and contentBlockStop carry nothing an OpenAI client needs.
        return []

    def _delta(self, block: int, delta: dict[str, Any]) -> list[Chunk]:
        if delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        tool = delta.get("toolUse")
        if tool is not None and tool.get("input") and block in self._tools:
            piece = {"index": self._tools[block], "function": {"arguments": tool["input"]}}
            return [self._chunk({"tool_calls": [piece]})]
        reasoning = (delta.get("reasoningContent") or {}).get("text")
        if reasoning:
            return [self._chunk({"reasoning_content": reasoning})]
        return []

    def _base(self) -> Chunk:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def stream_error(message: Message) -> GatewayError:
    """The gateway error for an exception (or transport error) frame inside a 200 stream."""
    kind = str(message.headers.get(":exception-type") or message.headers.get(":error-code") or "unknown")
    detail = str(message.headers.get(":error-message") or "")
    try:
        payload = msgspec.json.decode(message.payload) if message.payload else {}
        if isinstance(payload, dict):
            detail = str(payload.get("message") or payload.get("Message") or detail)
    except msgspec.DecodeError:
        pass
    text = f"Bedrock reported an error mid-stream: {kind}: {detail or 'no message'}"
    if kind == "throttlingException":
        return RateLimitError(text)
    if kind == "validationException":
        return UpstreamRequestError(text)
    return UpstreamError(text, code="upstream_stream_error")
