"""Cohere v2 chat stream events turned into OpenAI `chat.completion.chunk` dicts. Pure: no I/O.

Events: message-start, content-start/-delta/-end (text, or thinking on reasoning models), tool-plan-delta,
tool-call-start/-delta/-end, citation-start/-end and message-end with the finish reason and usage.
"""

from __future__ import annotations

from typing import Any

from sluicegate.errors import UpstreamError
from sluicegate.providers.base import Usage
from sluicegate.providers.cohere import chat

Chunk = dict[str, Any]


class StreamTranslator:
    def __init__(self, model: str, *, created: int) -> None:
        self._model = model
        self._created = created
        self._id = "chatcmpl-cohere"
        self._announced = False
        self._tools = 0
        self._usage = Usage()
        self.finished = False

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        kind = data.get("type")
        message = (data.get("delta") or {}).get("message") or {}
        try:
            chunks = self._event(kind, data, message)
        except (KeyError, TypeError, AttributeError):
            raise UpstreamError(f"Cohere sent a malformed '{kind}' event", code="upstream_malformed_response") from None
        if chunks and not self._announced:
            self._announced = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    def finish(self) -> list[Chunk]:
        return [{**self._base(), "choices": [], "usage": self._usage.to_openai()}]

    def _event(self, kind: Any, data: dict[str, Any], message: dict[str, Any]) -> list[Chunk]:
        if kind == "message-start":
            self._id = f"chatcmpl-{data.get('id') or 'cohere'}"
        elif kind == "content-delta":
            content = message.get("content") or {}
            if content.get("text"):
                return [self._chunk({"content": content["text"]})]
            if content.get("thinking"):
                return [self._chunk({"reasoning_content": content["thinking"]})]
        elif kind == "tool-call-start":
            call = message["tool_calls"]
            function = call.get("function") or {}
            start = {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": function.get("arguments") or ""},
            }
            self._tools += 1
            return [self._chunk({"tool_calls": [{"index": self._tools - 1, **start}]})]
        elif kind == "tool-call-delta":
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if arguments:
                return [self._chunk({"tool_calls": [{"index": self._tools - 1, "function": {"arguments": arguments}}]})]
        elif kind == "message-end":
            delta = data.get("delta") or {}
            if delta.get("finish_reason") == "ERROR":
                raise UpstreamError(
                    f"Cohere reported an error mid-stream: {delta.get('error') or 'ERROR'}",
                    code="upstream_stream_error",
                )
            self.finished = True
            self._usage = chat.usage(delta.get("usage") or {})
            return [self._chunk({}, chat.finish_reason(delta.get("finish_reason")))]
        # content-start/-end, tool-plan-delta, tool-call-end and citations: nothing an OpenAI client needs.
        return []

    def _base(self) -> Chunk:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
