"""What the gateway does to every chat stream, whichever provider produced it.

Chunks stay bytes: OpenAI-compatible streams pass through without being decoded. Only the chunks that
matter for accounting (the usage chunk and the one that finishes a choice) are looked into.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from sluicegate.providers.base import Usage, usage_from_openai_json


class StreamUsage:
    """Filled in while a stream passes; read when it has ended.

    Governance may ask for two more things: `extras`, fields added beside `usage` in the chunk that
    carries it (the request's cost), and `keep_text`, the streamed text kept so that a stream ending
    without usage (cancelled, cut off) can still be counted. Kept chunks are boiled down to their text
    every 64 KiB, so a long stream holds its text, not its JSON.
    """

    __slots__ = ("_kept", "_kept_bytes", "_text", "chunks", "extras", "usage")

    def __init__(
        self, *, keep_text: bool = False, extras: Callable[[Usage], dict[str, Any] | None] | None = None
    ) -> None:
        self.usage: Usage | None = None
        self.chunks = 0
        self.extras = extras
        self._kept: list[bytes] | None = [] if keep_text else None
        self._kept_bytes = 0
        self._text: list[str] = []

    def keep(self, chunk: bytes) -> None:
        kept = self._kept
        if kept is None:
            return
        kept.append(chunk)
        self._kept_bytes += len(chunk)
        if self._kept_bytes > _KEEP_BYTES:
            self._text.append(chunks_text(kept))
            kept.clear()
            self._kept_bytes = 0

    def stop_keeping(self) -> None:
        self._kept = None
        self._text.clear()

    def text(self) -> str:
        """The text, reasoning and tool-call arguments streamed so far (with `keep_text`)."""
        if self._kept:
            self._text.append(chunks_text(self._kept))
            self._kept.clear()
            self._kept_bytes = 0
        return "".join(self._text)


async def finish_stream(chunks: AsyncIterator[bytes], include_usage: bool, tally: StreamUsage) -> AsyncIterator[bytes]:
    """Record usage and present it the way the client asked.

    With `stream_options.include_usage` the client gets OpenAI's final `choices: []` usage chunk. Without
    it, usage rides on the chunk that carries `finish_reason` instead, so every stream still ends with
    its usage and clients that index `choices[0]` on every chunk keep working.
    """
    held: bytes | None = None
    keeping = tally._kept is not None
    async for chunk in chunks:
        tally.chunks += 1
        if keeping:
            tally.keep(chunk)
        if b'"usage"' in chunk and b'"usage":null' not in chunk:
            usage = usage_from_openai_json(chunk)
            if usage is not None:
                tally.usage = usage
                if keeping:  # the provider counted: nothing left to estimate, free the text
                    tally.stop_keeping()
                    keeping = False
                extra = tally.extras(usage) if tally.extras is not None else None
                if _is_usage_only(chunk):
                    if include_usage:
                        yield _with_fields(chunk, extra) if extra else chunk
                    elif held is not None:
                        yield _with_usage(held, usage, extra)
                        held = None
                    continue
                if extra:
                    chunk = _with_fields(chunk, extra)
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


def _with_usage(chunk: bytes, usage: Usage, extra: dict[str, Any] | None = None) -> bytes:
    data: dict[str, Any] = msgspec.json.decode(chunk)
    data["usage"] = usage.to_openai()
    if extra:
        data.update(extra)
    return msgspec.json.encode(data)


def _with_fields(chunk: bytes, extra: dict[str, Any]) -> bytes:
    data: dict[str, Any] = msgspec.json.decode(chunk)
    data.update(extra)
    return msgspec.json.encode(data)


_KEEP_BYTES = 64 * 1024


class _Function(msgspec.Struct):
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def chunks_text(chunks: list[bytes]) -> str:
    """What a model generated in these chunks: content, reasoning, refusals and tool-call arguments."""
    parts: list[str] = []
    for chunk in chunks:
        try:
            choices = _chunk_decoder.decode(chunk).choices
        except msgspec.DecodeError:
            continue
        for choice in choices or ():
            delta = choice.delta
            if delta is None:
                continue
            for text in (delta.content, delta.reasoning_content, delta.refusal):
                if text:
                    parts.append(text)
            for call in delta.tool_calls or ():
                if call.function is not None and call.function.arguments:
                    parts.append(call.function.arguments)
    return "".join(parts)
