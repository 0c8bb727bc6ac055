"""The harness every fake provider runs on: an aiohttp app on 127.0.0.1, in its own thread and loop.

A test queues faults on the fake (`fake.faults.append(Fault(status=429, retry_after=2))`); each incoming
request takes the next queued fault, or is answered normally when none is left. Every request body is
recorded in `fake.requests` so tests can assert on exactly what the gateway sent upstream.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Fault:
    #: answer with this HTTP status and the provider's own error body
    status: int | None = None
    retry_after: float | None = None
    #: seconds to wait before sending anything (headers included): a slow first byte or, long enough, a timeout
    delay: float = 0.0
    #: answer 200 with a body that is not valid JSON
    malformed: bool = False
    #: streams only: stop after this many events, dropping the connection without the closing event
    cut_after: int | None = None
    #: streams only: seconds between events
    pace: float | None = None
    #: streams only: send the provider's in-stream error event after this many events (errors hidden in a 200)
    error_event_after: int | None = None
    #: with `status`: the error message in the provider's error body (default "injected <status>")
    message: str | None = None


@dataclass
class RecordedRequest:
    path: str
    #: header names lower-cased
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)


Handler = Callable[["FakeProvider", web.Request, Any, Fault], Awaitable[web.StreamResponse]]


class FakeProvider:
    """Subclasses register routes in `routes()` and render errors in `error_response()`."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- to override -------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start_app())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake provider did not start")
        return self

    async def _start_app(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._wrap(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            headers = {name.lower(): value for name, value in request.headers.items()}
            self.requests.append(RecordedRequest(request.path, headers, body, dict(request.query)))
            fault = self.faults.popleft() if self.faults else Fault()
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                return web.json_response(
                    self.error_response(fault.status, fault.message or f"injected {fault.status}"),
                    status=fault.status,
                    headers=headers,
                )
            if fault.malformed:
                return web.Response(body=b'{"id": "oops", "choices": [', content_type="application/json")
            return await handler(self, request, body, fault)

        return endpoint

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()


async def send_sse(
    request: web.Request,
    events: list[tuple[str | None, Any]],
    fault: Fault,
    error_event: tuple[str | None, Any] | None = None,
) -> web.StreamResponse:
    """Write `events` as SSE, honouring the fault's pacing, mid-stream cut and in-stream error."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index, (name, data) in enumerate(events):
        if fault.cut_after is not None and index >= fault.cut_after:
            # Drop the connection without finishing the chunked body: what a dying upstream looks like.
            assert request.transport is not None
            request.transport.abort()
            return response
        if fault.error_event_after is not None and index == fault.error_event_after and error_event is not None:
            await response.write(_frame(*error_event))
            await response.write_eof()
            return response
        if fault.pace and index:
            await asyncio.sleep(fault.pace)
        await response.write(_frame(name, data))
    await response.write_eof()
    return response


def _frame(name: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {name}\n" if name else ""
    return f"{prefix}data: {payload}\n\n".encode()
