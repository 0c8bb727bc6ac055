"""Server-sent events: an incremental parser for upstream streams and the framing for ours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes


DONE = b"[DONE]"


class SSEParser:
    """Turns arbitrary byte chunks into complete events.

    Handles events split across reads, several events in one read, CRLF or LF line endings, comments
    and multi-line `data:` fields, as the SSE specification allows.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        events = []
        for block in blocks:
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """Whatever is left when the stream ends without a final blank line."""
        rest, self._buffer = self._buffer, b""
        event = _parse_block(rest.rstrip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []

    @property
    def pending(self) -> bytes:
        return self._buffer


def _parse_block(block: bytes) -> SSEEvent | None:
    # Fast path: the common single `data:` line with no event name.
    if block.startswith(b"data:") and b"\n" not in block:
        return SSEEvent(None, _field_value(block[5:]))
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = _field_value(value)
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if event is None and not data:
        return None
    return SSEEvent(event, b"\n".join(data))


def _field_value(value: bytes) -> bytes:
    return value[1:] if value.startswith(b" ") else value


def frame(data: bytes, event: str | None = None) -> bytes:
    """One SSE event as bytes on the wire."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
