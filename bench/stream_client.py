"""Streaming load client for the benchmark: time to first byte, and many concurrent SSE streams.

A raw asyncio Protocol with httptools on uvloop, so that the client's own cost stays small and equal for
every target (it shares a core with the fake upstream).

    ttfb  sequential streaming requests on one keep-alive connection; for each, the time from writing the
          request to the first body byte (the first SSE event)
    sse   N streams opened evenly over a ramp; for each, the largest gap between consecutive SSE events

Both print one JSON document on stdout. Every loop is bounded by a count and by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import httptools
import uvloop


@dataclass
class Target:
    host: str
    port: int
    path: str
    request: bytes


@dataclass
class Exchange:
    """What one streamed response looked like from the client's side."""

    sent: float = 0.0
    status: int = 0
    first_byte: float | None = None
    event_times: list[float] = field(default_factory=list)
    saw_done: bool = False
    complete: bool = False
    error: str | None = None

    @property
    def ttfb(self) -> float | None:
        return None if self.first_byte is None else self.first_byte - self.sent

    @property
    def max_gap(self) -> float:
        times = self.event_times
        return max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)


def build_request(host: str, port: int, path: str, model: str, api_key: str | None) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Count slowly, one token per chunk."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        separators=(",", ":"),
    ).encode()
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    if api_key:
        headers.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class StreamingConnection(asyncio.Protocol):
    """One HTTP/1.1 connection; `send()` starts an exchange, `done` resolves when its response is complete."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange = Exchange()
        self.done: asyncio.Future[Exchange] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._partial = b""

    def send(self, request: bytes) -> asyncio.Future[Exchange]:
        assert self.transport is not None
        self.exchange = Exchange()
        self._partial = b""
        self.done = asyncio.get_running_loop().create_future()
        self.exchange.sent = time.perf_counter()
        self.transport.write(request)
        return self.done

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad response: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection closed before the response was complete")

    # --- httptools callbacks --------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.exchange.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        now = time.perf_counter()
        exchange = self.exchange
        if exchange.first_byte is None:
            exchange.first_byte = now
        buffer = self._partial + body
        events = buffer.count(b"\n\n")
        if events:
            complete, _, self._partial = buffer.rpartition(b"\n\n")
            exchange.event_times.extend([now] * events)
            if b"data: [DONE]" in complete:
                exchange.saw_done = True
        else:
            self._partial = buffer

    def on_message_complete(self) -> None:
        self.exchange.complete = True
        if self.done is not None and not self.done.done():
            self.done.set_result(self.exchange)

    # --- helpers --------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if self.done is not None and not self.done.done():
            self.exchange.error = reason
            self.done.set_result(self.exchange)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(target: Target) -> StreamingConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(StreamingConnection, target.host, target.port)
    return protocol


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def summary_ms(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _ms(percentile(values, 0.50)),
        "p90": _ms(percentile(values, 0.90)),
        "p99": _ms(percentile(values, 0.99)),
        "max": _ms(max(values, default=None)),
    }


def failure_reason(exchange: Exchange, min_events: int) -> str | None:
    if exchange.error is not None:
        return exchange.error
    if exchange.status != 200:
        return f"HTTP {exchange.status}"
    if not exchange.saw_done:
        return "no data: [DONE]"
    if len(exchange.event_times) < min_events:
        return f"fewer than {min_events} events"
    return None


# --- ttfb --------------------------------------------------------------------------------------


async def measure_ttfb(target: Target, samples: int, warmup: int, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    connection = await connect(target)
    ttfbs: list[float] = []
    failures: Counter[str] = Counter()
    sent = 0
    try:
        for index in range(warmup + samples):
            if time.monotonic() > deadline or connection.transport is None or connection.transport.is_closing():
                failures["stopped early (timeout or connection closed)"] += 1
                break
            try:
                exchange = await asyncio.wait_for(
                    connection.send(target.request), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                failures["timed out"] += 1
                break
            sent += 1
            reason = failure_reason(exchange, min_events=1)
            if reason is not None:
                failures[reason] += 1
            elif index >= warmup and exchange.ttfb is not None:
                ttfbs.append(exchange.ttfb)
    finally:
        connection.close()
    return {"samples": len(ttfbs), "requests": sent, "failures": dict(failures), "ttfb_ms": summary_ms(ttfbs)}


# --- sse ---------------------------------------------------------------------------------------


async def _one_stream(target: Target, start_at: float, timeout: float) -> Exchange:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        connection = await asyncio.wait_for(connect(target), timeout)
    except (TimeoutError, OSError) as exc:
        return Exchange(error=f"connect failed: {type(exc).__name__}")
    try:
        return await asyncio.wait_for(connection.send(target.request), timeout)
    except TimeoutError:
        return Exchange(error="timed out")
    finally:
        connection.close()


async def measure_sse(target: Target, streams: int, ramp: float, min_events: int, timeout: float) -> dict[str, object]:
    began = time.monotonic()
    step = ramp / streams if streams else 0.0
    tasks = [_one_stream(target, began + index * step, timeout) for index in range(streams)]
    exchanges = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    failures: Counter[str] = Counter()
    gaps: list[float] = []
    ttfbs: list[float] = []
    for exchange in exchanges:
        reason = failure_reason(exchange, min_events)
        if reason is not None:
            failures[reason] += 1
            continue
        gaps.append(exchange.max_gap)
        if exchange.ttfb is not None:
            ttfbs.append(exchange.ttfb)
    return {
        "streams": streams,
        "completed": len(gaps),
        "failures": dict(failures),
        "elapsed_s": round(elapsed, 3),
        "max_gap_ms": summary_ms(gaps),
        "ttfb_ms": summary_ms(ttfbs),
    }


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["ttfb", "sse"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole measurement")
    parser.add_argument("--samples", type=int, default=1500, help="ttfb: measured requests")
    parser.add_argument("--warmup", type=int, default=100, help="ttfb: unmeasured requests first")
    parser.add_argument("--streams", type=int, default=500, help="sse: concurrent streams")
    parser.add_argument("--ramp", type=float, default=0.5, help="sse: seconds over which streams are opened")
    parser.add_argument("--min-events", type=int, default=50, help="sse: events a complete stream has at least")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, object]:
    request = build_request(args.host, args.port, args.path, args.model, args.api_key)
    target = Target(args.host, args.port, args.path, request)
    if args.mode == "ttfb":
        return await measure_ttfb(target, args.samples, args.warmup, args.timeout)
    return await asyncio.wait_for(
        measure_sse(target, args.streams, args.ramp, args.min_events, args.timeout), args.timeout + 5.0
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = uvloop.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
