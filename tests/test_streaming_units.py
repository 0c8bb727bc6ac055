"""The SSE parser and the shared stream post-processing, with plain input/output pairs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from sluicegate.streaming.chunks import StreamUsage, finish_stream
from sluicegate.streaming.sse import SSEEvent, SSEParser, frame


def test_parser_handles_split_events_crlf_comments_and_multiline_data() -> None:
    parser = SSEParser()
    wire = b': keep-alive\r\n\r\nevent: message_start\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]\r\n\r\n'
    events = []
    for i in range(0, len(wire), 7):  # feed in awkward 7-byte pieces
        events.extend(parser.feed(wire[i : i + 7]))
    assert events == [SSEEvent("message_start", b'{"a":\n1}'), SSEEvent(None, b"[DONE]")]
    assert parser.pending == b""


def test_parser_flushes_a_final_event_without_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"x": 1}') == []
    assert parser.flush() == [SSEEvent(None, b'{"x": 1}')]


def test_frame() -> None:
    assert frame(b"{}") == b"data: {}\n\n"
    assert frame(b"{}", "error") == b"event: error\ndata: {}\n\n"


def _chunk(**fields: object) -> bytes:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", **fields}, separators=(",", ":")).encode()


STREAM = [
    _chunk(choices=[{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], usage=None),
    _chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=None),
    _chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}),
]


async def _collect(include_usage: bool) -> tuple[list[dict[str, object]], StreamUsage]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in STREAM:
            yield chunk

    tally = StreamUsage()
    out = [json.loads(c) async for c in finish_stream(source(), include_usage, tally)]
    return out, tally


@pytest.mark.parametrize("include_usage", [True, False])
async def test_usage_is_recorded_either_way(include_usage: bool) -> None:
    out, tally = await _collect(include_usage)
    assert tally.usage is not None and tally.usage.total_tokens == 4 and tally.chunks == 3
    if include_usage:
        assert out[-1]["choices"] == [] and len(out) == 3
    else:
        assert len(out) == 2 and out[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        assert out[-1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
