"""Structured request logs: one JSON line per finished request on the `sluicegate.requests` logger.

The request only queues its record; a background writer turns records into JSON and hands them to
`logging` from a worker thread, because log handlers write to files and pipes, which can block.
When nobody configured a handler for the logger, the lines go to stdout as bare JSON (no prefix), which is
what log shippers expect.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import msgspec

from sluicegate.context import RequestRecord
from sluicegate.observability.entry import request_entry
from sluicegate.observability.queue import BatchQueue

LOGGER_NAME = "sluicegate.requests"
log = logging.getLogger(LOGGER_NAME)


class RequestLogSink:
    def __init__(self, *, include_prompts: bool = False, max_queue: int = 10_000) -> None:
        self._include_prompts = include_prompts
        self._encoder = msgspec.json.Encoder()
        self.queue: BatchQueue[RequestRecord] = BatchQueue(
            "request-log", self._write, max_items=max_queue, batch_size=200, interval=0.2, requeue_on_error=False
        )

    def emit(self, record: RequestRecord) -> None:
        self.queue.put(record)

    def line(self, record: RequestRecord) -> str:
        return self._encoder.encode(request_entry(record, include_prompt=self._include_prompts)).decode()

    async def _write(self, records: list[RequestRecord]) -> None:
        lines = [self.line(record) for record in records]
        await asyncio.to_thread(_log_lines, lines)

    async def start(self) -> None:
        _ensure_handler()
        await self.queue.start()

    async def aclose(self) -> None:
        await self.queue.aclose()


def _log_lines(lines: list[str]) -> None:
    for line in lines:
        log.info(line)


def _ensure_handler() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # The root logger's format would prefix every line and break the one-JSON-object-per-line contract.
    log.propagate = False
