"""Hands each finished request's record to the sinks that want it (metrics, spend, logs, callbacks).

`emit` is called on the hot path and must stay cheap and non-blocking: sinks that write to a database or
the network queue the record and flush in the background.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sluicegate.config import Config
from sluicegate.context import RequestRecord

log = logging.getLogger("sluicegate.recorder")


class Sink(Protocol):
    def emit(self, record: RequestRecord) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Recorder:
    def __init__(self, config: Config, sinks: list[Sink] | None = None) -> None:
        self.config = config
        self.sinks: list[Sink] = list(sinks or [])

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, record: RequestRecord) -> None:
        for sink in self.sinks:
            try:
                sink.emit(record)
            except Exception:
                # A broken sink must never fail the request it is reporting on.
                log.exception("sink %s failed to take record %s", type(sink).__name__, record.request_id)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def aclose(self) -> None:
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("sink %s failed to close", type(sink).__name__)
