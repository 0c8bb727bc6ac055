"""A complete chat answer replayed as a stream, for answers served from the cache or the idempotency store."""

from __future__ import annotations

from typing import Any

import msgspec


def completion_to_chunks(body: bytes) -> list[bytes]:
    """The `chat.completion.chunk` documents a provider would have streamed for this `chat.completion`.

    One content chunk per choice (a replay has nothing to gain from splitting text), tool calls whole,
    then the finish chunk and OpenAI's usage chunk.
    """
    completion: dict[str, Any] = msgspec.json.decode(body)
    base = {
        "id": completion.get("id", "chatcmpl-replay"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    chunks: list[bytes] = []
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        for field in ("content", "reasoning_content", "refusal"):
            if message.get(field) is not None:
                delta[field] = message[field]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks.append(_chunk(base, [{"index": index, "delta": delta, "finish_reason": None}]))
        chunks.append(
            _chunk(base, [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}])
        )
    if completion.get("usage") is not None:
        chunks.append(msgspec.json.encode({**base, "choices": [], "usage": completion["usage"]}))
    return chunks


def _chunk(base: dict[str, Any], choices: list[dict[str, Any]]) -> bytes:
    return msgspec.json.encode({**base, "choices": choices})
