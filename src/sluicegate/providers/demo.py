"""An offline provider with deterministic answers, so the gateway works with no key and no network."""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec

from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider, Usage


class DemoProvider(Provider):
    type_name: ClassVar[str] = "demo"

    async def chat(self, call: Call) -> ChatResult:
        text, usage = demo_answer(call.request)
        body = {
            "id": _completion_id(call.request),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage.to_openai(),
        }
        return ChatResult(msgspec.json.encode(body), usage)

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        text, usage = demo_answer(call.request)
        base = {
            "id": _completion_id(call.request),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
        }
        yield msgspec.json.encode(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
        for word in _pieces(text):
            yield msgspec.json.encode(
                {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            )
        yield msgspec.json.encode({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        yield msgspec.json.encode({**base, "choices": [], "usage": usage.to_openai()})

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        inputs = call.request["input"]
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs]
        dimensions = int(call.request.get("dimensions") or 16)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(text, dimensions)} for i, text in enumerate(texts)
        ]
        tokens = sum(_count_tokens(text) for text in texts)
        usage = Usage(prompt_tokens=tokens, total_tokens=tokens)
        body = {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingsResult(msgspec.json.encode(body), usage)


def demo_answer(request: dict[str, Any]) -> tuple[str, Usage]:
    """The same request always gets the same answer."""
    last = _last_user_text(request.get("messages") or [])
    text = (
        f"Hello from Sluicegate's demo provider. You said: {last}" if last else "Hello from Sluicegate's demo provider."
    )
    prompt = sum(
        _count_tokens(_text_of(m.get("content"))) for m in request.get("messages") or [] if isinstance(m, dict)
    )
    completion = _count_tokens(text)
    return text, Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))[:500]
    return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _count_tokens(text: str) -> int:
    # A rough, deterministic stand-in for a tokenizer: about four characters a token.
    return max(1, (len(text) + 3) // 4) if text else 0


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _completion_id(request: dict[str, Any]) -> str:
    digest = hashlib.sha256(msgspec.json.encode(request.get("messages") or [])).hexdigest()
    return f"chatcmpl-demo-{digest[:24]}"


def _vector(text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(v / 2**31 for v in struct.unpack("<8i", digest))
        counter += 1
    vector = values[:dimensions]
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]
