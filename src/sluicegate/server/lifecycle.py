"""A replica's life beyond serving requests: draining on SIGTERM and reloading the YAML on SIGHUP or change.

Drain (SIGTERM): readiness turns false at once (`/health/readiness` answers 503), the listener stays open
for `server.drain_delay` seconds so load balancers notice and stop sending, then uvicorn stops accepting
and gives in-flight requests and streams up to `server.shutdown_grace` seconds; the lifespan shutdown then
closes the gateway, which flushes spend and log batches. The process exits 0. A second SIGTERM, or SIGINT,
skips the delay.

Reload (SIGHUP, or the file's mtime changing, polled every second when `server.watch_config` is on): the
new file is loaded and a new gateway built and started beside the current one, then swapped in with one
assignment. Each request holds the generation it started on until it ends, so in-flight requests and streams
finish on the old gateway objects; the old gateway is closed when its last request ends. An invalid file is
refused with one log line and the current config keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from types import FrameType
from typing import Any

import uvicorn

from sluicegate.config import load_config
from sluicegate.gateway import Gateway
from sluicegate.server.app import App, run_lifespan
from sluicegate.server.asgi import Receive, Scope, Send

log = logging.getLogger("sluicegate.server")

#: seconds between two looks at the config file's mtime
WATCH_INTERVAL = 1.0


class _Generation:
    """One gateway and the app serving it, with the number of requests still running on it."""

    __slots__ = ("app", "gateway", "idle", "in_flight", "retired")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.app = App(gateway)
        self.in_flight = 0
        self.retired = False
        self.idle = asyncio.Event()


class ReloadingApp:
    """The ASGI app of a single-worker server: routes each request to the current generation."""

    def __init__(self, gateway: Gateway, config_path: str | None) -> None:
        self._current = _Generation(gateway)
        self.config_path = config_path
        self.draining = False
        self._stamp = _stamp(config_path)
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.reloads = 0

    @property
    def gateway(self) -> Gateway:
        return self._current.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            generation = self._current
            generation.in_flight += 1
            try:
                await generation.app(scope, receive, send)
            finally:
                generation.in_flight -= 1
                if generation.in_flight == 0 and generation.retired:
                    generation.idle.set()
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # --- lifespan ---------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self._start, self._shutdown)

    async def _start(self) -> None:
        await self.gateway.start()
        self._watch()

    def _watch(self) -> None:
        if self.config_path is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no SIGHUP on Windows
            loop.add_signal_handler(signal.SIGHUP, self._spawn_reload, "SIGHUP")
        if self.gateway.config.server.watch_config:
            self._spawn(self._watch_file())

    def _spawn_reload(self, reason: str) -> None:
        self._spawn(self.reload(reason))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shutdown(self) -> None:
        self.draining = True
        self.gateway.ready = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._background):
            task.cancel()
        # uvicorn has already waited for (or cut) the requests; what is left of old generations closes now.
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self.gateway.aclose()

    # --- reload -----------------------------------------------------------------------------------

    async def _watch_file(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            stamp = _stamp(self.config_path)
            if stamp is not None and stamp != self._stamp:
                await self.reload("file changed")

    async def reload(self, reason: str) -> bool:
        """Load the file again and swap the gateway; False (and the old config serving) when it is refused."""
        path = self.config_path
        if path is None:
            return False
        async with self._lock:
            if self.draining:
                return False
            self._stamp = _stamp(path)
            try:
                config = await asyncio.to_thread(load_config, path)
                gateway = Gateway(config)
            except Exception as exc:
                log.error("config reload (%s) refused, still serving the previous config: %s", reason, _why(exc))
                return False
            try:
                await gateway.start()
            except Exception as exc:
                log.error("config reload (%s) refused, still serving the previous config: %s", reason, _why(exc))
                with contextlib.suppress(Exception):
                    await gateway.aclose()
                return False
            old, self._current = self._current, _Generation(gateway)
            self.reloads += 1
            log.info(
                "config reloaded from %s (%s): %d providers, %d aliases",
                path,
                reason,
                len(config.providers),
                len(config.models),
            )
            self._retire(old)
            return True

    def _retire(self, generation: _Generation) -> None:
        generation.retired = True
        if generation.in_flight == 0:
            generation.idle.set()
        task = asyncio.ensure_future(_close_when_idle(generation))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close_when_idle(generation: _Generation) -> None:
    await generation.idle.wait()
    try:
        await generation.gateway.aclose()
    except Exception:
        log.exception("closing the previous config's gateway failed")


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _why(exc: Exception) -> str:
    from sluicegate.config import ConfigError
    from sluicegate.errors import GatewayError

    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, GatewayError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM turning readiness false `drain_delay` seconds before the listener closes."""

    def __init__(self, config: uvicorn.Config, app: ReloadingApp, drain_delay: float) -> None:
        super().__init__(config)
        self._served = app
        self._drain_delay = drain_delay
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._exit_at is not None:
            super().handle_exit(sig, frame)
            return
        # Not recorded in _captured_signals: uvicorn would re-raise it after shutdown and the exit status
        # would be -SIGTERM instead of 0.
        self._served.draining = True
        self._served.gateway.ready = False
        self._exit_at = time.monotonic() + self._drain_delay
        log.info(
            "SIGTERM: readiness is now false; closing the listener in %.1fs, then up to %.0fs for in-flight requests",
            self._drain_delay,
            self.config.timeout_graceful_shutdown or 0,
        )

    async def on_tick(self, counter: int) -> bool:
        # Called by uvicorn's main loop every 0.1 s: the drain delay ends here, on the event loop.
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            return True
        return await super().on_tick(counter)


def serve(gateway: Gateway, *, host: str, port: int, config_path: str | None, options: dict[str, Any]) -> None:
    """Run one worker with drain on SIGTERM and reload on SIGHUP / file change."""
    settings = gateway.config.server
    app = ReloadingApp(gateway, os.path.abspath(config_path) if config_path else None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
        **options,
    )
    DrainingServer(config, app, settings.drain_delay).run()
