"""What the gateway does to every chat stream, whichever provider produced it.

Chunks stay bytes: OpenAI-compatible streams pass through without being decoded. Only the chunks that
matter for accounting (the usage chunk and the one that finishes a choice) are looked into.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from sluicegate.providers.base import Usage, usage_from_openai_json


class StreamUsage:
    """Filled in while a stream passes; read when it has ended."""

    __slots__ = ("chunks", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.chunks = 0


async def finish_stream(chunks: AsyncIterator[bytes], include_usage: bool, tally: StreamUsage) -> AsyncIterator[bytes]:
    """Record usage and present it the way the client asked.

    With `stream_options.include_usage` the client gets OpenAI's final `choices: []` usage chunk. Without
    it, usage rides on the chunk that carries `finish_reason` instead, so every stream still ends with
    its usage and clients that index `choices[0]` on every chunk keep working.
    """
    held: bytes | None = None
    async for chunk in chunks:
        tally.chunks += 1
        if b'"usage"' in chunk and b'"usage":null' not in chunk:
            usage = usage_from_openai_json(chunk)
            if usage is not None:
                tally.usage = usage
                if _is_usage_only(chunk):
                    if include_usage:
                        yield chunk
                    elif held is not None:
                        yield _with_usage(held, usage)
                        held = None
                    continue
        if held is not None:
            yield held
            held = None
        if not include_usage and _finishes_a_choice(chunk):
            held = chunk
            continue
        yield chunk
    if held is not None:
        yield held


def _is_usage_only(chunk: bytes) -> bool:
    return b'"choices":[]' in chunk or b'"choices": []' in chunk


def _finishes_a_choice(chunk: bytes) -> bool:
    if b'"finish_reason"' not in chunk:
        return False
    return not (b'"finish_reason":null' in chunk or b'"finish_reason": null' in chunk)


def _with_usage(chunk: bytes, usage: Usage) -> bytes:
    data: dict[str, Any] = msgspec.json.decode(chunk)
    data["usage"] = usage.to_openai()
    return msgspec.json.encode(data)
