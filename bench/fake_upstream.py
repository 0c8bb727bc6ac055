"""A fast fake OpenAI-compatible upstream for the benchmark.

A raw asyncio Protocol with httptools on uvloop: no framework between the socket and the canned bytes, so
that the fake costs a small fraction of what the gateway under test costs (it shares a core with wrk).

    POST /v1/chat/completions          canned chat.completion with usage
      {"stream": true}                  SSE chunks (chunked transfer encoding), then `data: [DONE]`
      stream_options.include_usage     adds the final usage chunk with `choices: []`
    POST /_bench/profile               {"chunks": 50, "pace_ms": 20} changes the stream shape at run time,
                                       so one fake (and one gateway pointed at it) serves every bench part
    GET  /health                        200

Run: python bench/fake_upstream.py --port 0 [--chunks 5] [--pace-ms 0]
It prints `READY <port>` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools
import msgspec
import uvloop

CREATED = int(time.time())
CONTENT = "Hello from the bench upstream."
PROMPT_TOKENS = 12
MAX_CACHED_MODELS = 64


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    model: str = "bench-model"
    stream: bool = False
    stream_options: StreamOptions | None = None


class Profile(msgspec.Struct):
    chunks: int = 5
    pace_ms: float = 0.0


@dataclass(frozen=True)
class StreamBody:
    """A stream already encoded as HTTP chunks: one per SSE event, and the trailer events."""

    events: tuple[bytes, ...]
    tail: bytes


_decode_request = msgspec.json.Decoder(ChatRequest).decode
_decode_profile = msgspec.json.Decoder(Profile).decode
_encode = msgspec.json.encode


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse_event(document: object) -> bytes:
    return b"data: " + _encode(document) + b"\n\n"


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def completion_body(model: str) -> bytes:
    return _encode(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(7),
            "system_fingerprint": None,
        }
    )


def _chunk_document(model: str, index: int, count: int, include_usage: bool) -> dict[str, object]:
    delta: dict[str, str] = {"content": f"tok{index} "}
    if index == 0:
        delta["role"] = "assistant"
    document: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": "stop" if index == count - 1 else None}
        ],
    }
    if include_usage:
        # OpenAI sends `usage: null` on every chunk but the last one when usage is requested.
        document["usage"] = None
    return document


def stream_body(model: str, count: int, include_usage: bool) -> StreamBody:
    events = tuple(
        _http_chunk(_sse_event(_chunk_document(model, index, count, include_usage))) for index in range(count)
    )
    tail = b""
    if include_usage:
        usage_chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [],
            "usage": _usage(count),
        }
        tail += _http_chunk(_sse_event(usage_chunk))
    tail += _http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return StreamBody(events, tail)


def _head(status: str, content_type: str, length: int | None, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}"]
    if length is None:
        lines += ["Cache-Control: no-cache", "Transfer-Encoding: chunked"]
    else:
        lines.append(f"Content-Length: {length}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json_response(status: str, body: bytes, keep_alive: bool) -> bytes:
    return _head(status, "application/json", len(body), keep_alive) + body


def _error(status: str, message: str, keep_alive: bool) -> bytes:
    document = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return _json_response(status, _encode(document), keep_alive)


class Upstream:
    """State shared by every connection: the stream profile and the encoded-response caches."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._completions: dict[str, bytes] = {}
        self._streams: dict[tuple[str, int, bool], StreamBody] = {}

    def completion(self, model: str, keep_alive: bool) -> bytes:
        body = self._completions.get(model)
        if body is None:
            body = completion_body(model)
            if len(self._completions) < MAX_CACHED_MODELS:
                self._completions[model] = body
        return _json_response("200 OK", body, keep_alive)

    def stream(self, model: str, include_usage: bool) -> StreamBody:
        key = (model, self.profile.chunks, include_usage)
        body = self._streams.get(key)
        if body is None:
            body = stream_body(model, self.profile.chunks, include_usage)
            if len(self._streams) < MAX_CACHED_MODELS:
                self._streams[key] = body
        return body


@dataclass
class _Request:
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool


class _PacedStream:
    """Writes one event per `pace` seconds on absolute deadlines, so timer lateness does not accumulate."""

    def __init__(self, connection: UpstreamProtocol, body: StreamBody, pace: float, keep_alive: bool) -> None:
        self._connection = connection
        self._body = body
        self._pace = pace
        self._keep_alive = keep_alive
        self._index = 0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self.timer: asyncio.TimerHandle | None = None

    def step(self) -> None:
        self.timer = None
        transport = self._connection.transport
        if transport is None or transport.is_closing():
            return
        transport.write(self._body.events[self._index])
        self._index += 1
        if self._index < len(self._body.events):
            self.timer = self._loop.call_at(self._start + self._index * self._pace, self.step)
            return
        transport.write(self._body.tail)
        self._connection.finish(self._keep_alive)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body: list[bytes] = []
        self._pending: deque[_Request] = deque()
        self._stream: _PacedStream | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_error("400 Bad Request", "malformed HTTP request", keep_alive=False))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        self.transport = None

    # --- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.partition(b"?")[0]
        request = _Request(self._parser.get_method(), path, b"".join(self._body), self._parser.should_keep_alive())
        if self._stream is not None:
            self._pending.append(request)
        else:
            self._handle(request)

    # --- routing --------------------------------------------------------------------------
    def _handle(self, request: _Request) -> None:
        if request.path.endswith(b"/chat/completions") and request.method == b"POST":
            self._chat(request)
        elif request.path == b"/_bench/profile" and request.method == b"POST":
            self._set_profile(request)
        elif request.path in (b"/health", b"/"):
            self._write(_json_response("200 OK", b'{"status":"ok"}', request.keep_alive))
            self.finish(request.keep_alive)
        else:
            self._write(_error("404 Not Found", "no such route on the bench upstream", request.keep_alive))
            self.finish(request.keep_alive)

    def _chat(self, request: _Request) -> None:
        try:
            chat = _decode_request(request.body)
        except msgspec.DecodeError:
            self._write(_error("400 Bad Request", "the body is not a chat completion request", request.keep_alive))
            self.finish(request.keep_alive)
            return
        if not chat.stream:
            self._write(self.upstream.completion(chat.model, request.keep_alive))
            self.finish(request.keep_alive)
            return
        include_usage = chat.stream_options is not None and chat.stream_options.include_usage
        body = self.upstream.stream(chat.model, include_usage)
        self._write(_head("200 OK", "text/event-stream", None, request.keep_alive))
        pace = self.upstream.profile.pace_ms / 1000.0
        if pace <= 0 or not body.events:
            self._write(b"".join(body.events) + body.tail)
            self.finish(request.keep_alive)
            return
        self._stream = _PacedStream(self, body, pace, request.keep_alive)
        self._stream.step()

    def _set_profile(self, request: _Request) -> None:
        try:
            profile = _decode_profile(request.body)
        except msgspec.DecodeError:
            self._write(_error("400 Bad Request", "expected {chunks, pace_ms}", request.keep_alive))
            self.finish(request.keep_alive)
            return
        if profile.chunks < 1 or profile.pace_ms < 0:
            self._write(_error("400 Bad Request", "chunks must be >= 1 and pace_ms >= 0", request.keep_alive))
        else:
            self.upstream.profile = profile
            self._write(_json_response("200 OK", _encode(profile), request.keep_alive))
        self.finish(request.keep_alive)

    # --- helpers --------------------------------------------------------------------------
    def finish(self, keep_alive: bool) -> None:
        """The current response is complete: serve a pipelined request, or close the connection."""
        self._stream = None
        if not keep_alive:
            self._close()
            return
        if self._pending:
            self._handle(self._pending.popleft())

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int, profile: Profile) -> None:
    loop = asyncio.get_running_loop()
    upstream = Upstream(profile)
    server = await loop.create_server(lambda: UpstreamProtocol(upstream), host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--chunks", type=int, default=5, help="content chunks per stream")
    parser.add_argument("--pace-ms", type=float, default=0.0, help="milliseconds between stream chunks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.chunks < 1 or args.pace_ms < 0:
        print("--chunks must be >= 1 and --pace-ms >= 0", file=sys.stderr)
        return 2
    uvloop.run(serve(args.host, args.port, Profile(chunks=args.chunks, pace_ms=args.pace_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
