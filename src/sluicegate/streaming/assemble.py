"""A finished stream's chunks put back together as the `chat.completion` the provider would have answered.

The cache and the idempotency store keep complete answers; a streamed answer is stored this way and
replayed later either as JSON or, through `completion_to_chunks`, as a stream again.
"""

from __future__ import annotations

from typing import Any

import msgspec

_COMPLETE = frozenset({"stop", "tool_calls", "function_call"})


class _Choice:
    __slots__ = ("content", "finish_reason", "reasoning", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> None:
        if delta.get("role"):
            self.role = delta["role"]
        for field, parts in (
            ("content", self.content),
            ("reasoning_content", self.reasoning),
            ("refusal", self.refusal),
        ):
            if delta.get(field):
                parts.append(delta[field])
        for call in delta.get("tool_calls") or []:
            self._add_call(call)

    def _add_call(self, call: dict[str, Any]) -> None:
        index = call.get("index", len(self.tool_calls))
        current = self.tool_calls.get(index)
        if current is None:
            current = self.tool_calls[index] = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        if call.get("id"):
            current["id"] = call["id"]
        if call.get("type"):
            current["type"] = call["type"]
        function = call.get("function") or {}
        if function.get("name"):
            current["function"]["name"] += function["name"]
        if function.get("arguments"):
            current["function"]["arguments"] += function["arguments"]

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) if self.content else None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return message


def chunks_to_completion(chunks: list[bytes]) -> bytes | None:
    """The `chat.completion` JSON for these `chat.completion.chunk` documents, or None when the stream is not a
    whole answer (a choice never finished, a chunk is garbled or carried an error). A choice cut by the length
    limit is a whole answer here (an idempotent replay returns it); `is_complete` says whether to cache it."""
    choices: dict[int, _Choice] = {}
    head: dict[str, Any] = {}
    usage: Any = None
    for raw in chunks:
        try:
            chunk = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        if not head:
            head = {key: chunk.get(key) for key in ("id", "created", "model", "system_fingerprint") if key in chunk}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            state = choices.setdefault(choice.get("index", 0), _Choice())
            state.add(choice.get("delta") or {})
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
    if not choices or any(choice.finish_reason is None for choice in choices.values()):
        return None
    completion: dict[str, Any] = {
        "id": head.get("id", "chatcmpl-assembled"),
        "object": "chat.completion",
        "created": head.get("created", 0),
        "model": head.get("model", ""),
        "choices": [
            {"index": index, "message": choices[index].message(), "finish_reason": choices[index].finish_reason}
            for index in sorted(choices)
        ],
    }
    if head.get("system_fingerprint"):
        completion["system_fingerprint"] = head["system_fingerprint"]
    if usage is not None:
        completion["usage"] = usage
    return msgspec.json.encode(completion)


def is_complete(body: bytes) -> bool:
    """Whether a `chat.completion` finished every choice normally (not cut by max_tokens or a filter)."""
    try:
        choices = _finish_reasons.decode(body).choices
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return bool(choices) and all(choice.finish_reason in _COMPLETE for choice in choices)


class _Finished(msgspec.Struct):
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_Finished] = []


_finish_reasons = msgspec.json.Decoder(_Completion)
