"""The AWS event-stream binary framing that ConverseStream answers in (`application/vnd.amazon.eventstream`).

Each message is: total length (u32) | headers length (u32) | CRC32 of those 8 bytes | headers | payload |
CRC32 of everything before it, all big-endian. A header is: name length (u8) | name | value type (u8) |
value. Bedrock puts the event name in `:event-type` and marks failures with `:message-type: exception`.

`Decoder` is incremental: feed it reads of any size, it returns the complete messages. `encode` writes the
same framing; the gateway never sends event streams, the test fakes do.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from sluicegate.errors import UpstreamError

_PRELUDE = struct.Struct(">III")
_PRELUDE_SIZE = 12
_CRC_SIZE = 4
#: the smallest frame (no headers, no payload), and a bound that keeps garbage from growing the buffer forever
_MIN_MESSAGE = _PRELUDE_SIZE + _CRC_SIZE
MAX_MESSAGE = 16 * 1024 * 1024

HeaderValue = bool | int | bytes | str | uuid.UUID


@dataclass(slots=True)
class Message:
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def event_type(self) -> str:
        return str(self.headers.get(":event-type", ""))

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))


class Decoder:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still waiting for the rest."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= _PRELUDE_SIZE:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer, offset)
            if zlib.crc32(buffer[offset : offset + 8]) != prelude_crc:
                raise _malformed("prelude checksum mismatch")
            if total < _MIN_MESSAGE or total > MAX_MESSAGE or headers_length > total - _MIN_MESSAGE:
                raise _malformed(f"impossible message length {total}")
            if len(buffer) - offset < total:
                break
            end = offset + total
            (message_crc,) = struct.unpack_from(">I", buffer, end - _CRC_SIZE)
            if zlib.crc32(buffer[offset : end - _CRC_SIZE]) != message_crc:
                raise _malformed("message checksum mismatch")
            headers_start = offset + _PRELUDE_SIZE
            payload_start = headers_start + headers_length
            headers = _parse_headers(bytes(buffer[headers_start:payload_start]))
            messages.append(Message(headers, bytes(buffer[payload_start : end - _CRC_SIZE])))
            offset = end
        if offset:
            del buffer[:offset]
        return messages


def _parse_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    position = 0
    try:
        while position < len(data):
            name_length = data[position]
            name = data[position + 1 : position + 1 + name_length].decode()
            position += 1 + name_length
            kind = data[position]
            position += 1
            value, position = _read_value(data, position, kind)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise _malformed("truncated header") from None
    return headers


_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def _read_value(data: bytes, position: int, kind: int) -> tuple[HeaderValue, int]:
    if kind == 0:
        return True, position
    if kind == 1:
        return False, position
    if kind in _FIXED:
        layout = struct.Struct(_FIXED[kind])
        if position + layout.size > len(data):
            raise IndexError
        return layout.unpack_from(data, position)[0], position + layout.size
    if kind in (6, 7):
        (length,) = struct.unpack_from(">H", data, position)
        raw = data[position + 2 : position + 2 + length]
        if len(raw) != length:
            raise IndexError
        return (raw.decode() if kind == 7 else raw), position + 2 + length
    if kind == 9:
        raw = data[position : position + 16]
        if len(raw) != 16:
            raise IndexError
        return uuid.UUID(bytes=raw), position + 16
    raise _malformed(f"unknown header value type {kind}")


def encode(headers: dict[str, Any], payload: bytes) -> bytes:
    """One framed message; header values may be str, bytes, bool or int (sent as a 32-bit integer)."""
    encoded = b"".join(_encode_header(name, value) for name, value in headers.items())
    total = _PRELUDE_SIZE + len(encoded) + len(payload) + _CRC_SIZE
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _encode_header(name: str, value: Any) -> bytes:
    raw_name = name.encode()
    head = bytes([len(raw_name)]) + raw_name
    if isinstance(value, bool):
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        return head + b"\x04" + struct.pack(">i", value)
    if isinstance(value, bytes):
        return head + b"\x06" + struct.pack(">H", len(value)) + value
    raw = str(value).encode()
    return head + b"\x07" + struct.pack(">H", len(raw)) + raw


def _malformed(detail: str) -> UpstreamError:
    return UpstreamError(f"Bedrock sent a malformed event stream ({detail})", code="upstream_malformed_response")
