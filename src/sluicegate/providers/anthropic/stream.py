"""Anthropic's streaming events turned into OpenAI `chat.completion.chunk` dicts, one event at a time.

Pure: no I/O, so the translator is tested by feeding it recorded events. The adapter owns the socket.

Anthropic streams a message as typed events (message_start, content_block_start/delta/stop per block,
message_delta with the stop reason and final usage, message_stop). OpenAI streams flat deltas on one
choice, with tool calls addressed by their position among the tool calls. The translator keeps the little
state that mapping needs: which Anthropic block is which kind, and the tool-call count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from sluicegate.errors import UpstreamError
from sluicegate.providers.anthropic.chat import completion_id, finish_reason, usage_from_anthropic
from sluicegate.providers.base import Usage

Chunk = dict[str, Any]


@dataclass(slots=True)
class _Block:
    kind: str
    #: position among the tool calls (OpenAI's `tool_calls[].index`), for tool_use blocks
    tool_index: int = 0
    has_arguments: bool = False


class StreamTranslator:
    """Feed it each event in order; it returns the chunks to send (often none, sometimes several)."""

    def __init__(self, *, created: int | None = None) -> None:
        self.created = int(time.time()) if created is None else created
        self._id = completion_id(None)
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tool_calls = 0
        self._finish_reason: str | None = None
        self._finished = False
        self._announced = False
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Chunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    @property
    def finished(self) -> bool:
        """Whether message_stop was seen: a stream that ends before it was cut off."""
        return self._finished

    @property
    def usage(self) -> Usage:
        return usage_from_anthropic(self._usage)

    def feed(self, event_name: str | None, data: dict[str, Any]) -> list[Chunk]:
        kind = event_name or data.get("type") or ""
        handler = self._handlers.get(kind)
        if handler is None:
            # ping, and event types Anthropic may add: its versioning policy says to ignore unknown ones.
            return []
        try:
            chunks = handler(data)
        except (KeyError, TypeError, AttributeError):
            raise UpstreamError(
                f"the provider sent a malformed '{kind}' stream event", code="upstream_malformed_response"
            ) from None
        if chunks and not self._announced:
            # The role chunk waits for the first real output: Anthropic can send message_start and then an
            # overloaded error, and until a chunk is out the gateway may still fail over to another deployment.
            self._announced = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    # --- events --------------------------------------------------------------------------------

    def _message_start(self, data: dict[str, Any]) -> list[Chunk]:
        message = data["message"]
        self._id = completion_id(message.get("id"))
        self._model = message.get("model") or ""
        self._merge_usage(message.get("usage"))
        return []

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        block = data["content_block"]
        kind = block["type"]
        if kind == "tool_use":
            return [self._start_tool_call(data["index"], block)]
        self._blocks[data["index"]] = _Block(kind)
        # Text and thinking blocks normally start empty and fill through deltas; send whatever they carry.
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _start_tool_call(self, index: int, block: dict[str, Any]) -> Chunk:
        tool = _Block("tool_use", tool_index=self._tool_calls)
        self._tool_calls += 1
        self._blocks[index] = tool
        # The input arrives through input_json_delta events; a start block carrying it is sent as is.
        arguments = msgspec.json.encode(block["input"]).decode() if block.get("input") else ""
        tool.has_arguments = bool(arguments)
        call = {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
        return self._chunk({"tool_calls": [{"index": tool.tool_index, **call}]})

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        block = self._blocks.get(data["index"])
        delta = data["delta"]
        kind = delta["type"]
        if kind == "text_delta" and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta["thinking"]:
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and block is not None and block.kind == "tool_use" and delta["partial_json"]:
            block.has_arguments = True
            return [self._arguments(block, delta["partial_json"])]
        # signature_delta, citations_delta, and input for server-side tools: nothing the client can use.
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[Chunk]:
        block = self._blocks.get(data["index"])
        if block is not None and block.kind == "tool_use" and not block.has_arguments:
            # A tool without parameters streams no input at all; OpenAI clients json-parse the arguments.
            block.has_arguments = True
            return [self._arguments(block, "{}")]
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[Chunk]:
        self._merge_usage(data.get("usage"))
        self._finish_reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
        return [self._chunk({}, self._finish_reason)]

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        self._finished = True
        chunks = [] if self._finish_reason is not None else [self._chunk({}, finish_reason(None))]
        chunks.append(self._usage_chunk())
        return chunks

    def _error(self, data: dict[str, Any]) -> list[Chunk]:
        # An error hidden in a 200 (overloaded_error, api_error): the attempt failed and may be retried.
        error = data.get("error") or {}
        detail = f"{error.get('type', 'error')}: {error.get('message', 'no message')}"
        raise UpstreamError(f"the provider reported an error mid-stream: {detail}", code="upstream_stream_error")

    # --- chunks --------------------------------------------------------------------------------

    def _merge_usage(self, usage: dict[str, Any] | None) -> None:
        # message_delta counts are cumulative and may repeat message_start's; the latest value wins.
        for key, value in (usage or {}).items():
            if value is not None:
                self._usage[key] = value

    def _arguments(self, block: _Block, arguments: str) -> Chunk:
        return self._chunk({"tool_calls": [{"index": block.tool_index, "function": {"arguments": arguments}}]})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _usage_chunk(self) -> Chunk:
        """The last chunk, shaped exactly like OpenAI's `include_usage` chunk."""
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self._model,
            "choices": [],
            "usage": self.usage.to_openai(),
        }
