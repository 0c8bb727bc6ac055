"""The spend sink: one row per finished request, written to the database in batches, off the hot path.

`emit` only appends the record to a list. A background task writes what has gathered every
`spend_flush_interval` seconds, or as soon as `spend_batch_size` records are waiting, one transaction
per batch. A clean shutdown (SIGTERM, `gateway.aclose()`) writes everything still waiting; a `kill -9`
loses only what had gathered since the last write started (at most one interval's worth of records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sluicegate.context import RequestRecord
from sluicegate.governance.store import Store, StoreUnavailable

log = logging.getLogger("sluicegate.governance")

#: records kept in memory while the database is unreachable; beyond that the oldest are dropped (and logged)
MAX_PENDING = 100_000


class SpendSink:
    def __init__(self, store: Store, *, batch_size: int = 200, interval: float = 1.0) -> None:
        self.store = store
        self.batch_size = max(batch_size, 1)
        self.interval = interval
        self._pending: list[RequestRecord] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0

    def emit(self, record: RequestRecord) -> None:
        pending = self._pending
        pending.append(record)
        if len(pending) >= self.batch_size and self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._closing = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = asyncio.create_task(self._run(), name="sluicegate-spend-writer")

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing spend records failed")

    async def flush(self) -> int:
        """Write every waiting record now; returns how many were written."""
        if self._lock is None:
            return 0
        written = 0
        async with self._lock:
            while self._pending:
                batch = self._pending[: self.batch_size]
                del self._pending[: self.batch_size]
                try:
                    await self.store.insert_spend([spend_row(record) for record in batch])
                except StoreUnavailable as exc:
                    self._pending[:0] = batch
                    self._trim()
                    log.warning("%d spend records wait for the database: %s", len(self._pending), exc)
                    break
                written += len(batch)
        self.written += written
        return written

    def _trim(self) -> None:
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            log.error("dropped %d spend records: the database has been unreachable too long", excess)

    async def aclose(self) -> None:
        """Stop the writer without interrupting a write in progress, then write what is left."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()


def spend_row(record: RequestRecord) -> list[Any]:
    usage = record.usage
    return [
        record.request_id,
        float(record.started_at),
        time.strftime("%Y-%m-%d", time.gmtime(record.started_at)),
        record.key_id,
        record.team,
        record.alias,
        record.deployment,
        record.provider,
        record.endpoint,
        int(record.stream),
        int(record.status),
        record.error_code,
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
        usage.cached_tokens if usage else 0,
        usage.cache_creation_tokens if usage else 0,
        usage.reasoning_tokens if usage else 0,
        float(record.cost_usd) if record.cost_usd is not None else None,
        int(record.usage_estimated),
        int(record.cancelled),
        record.cache,
        float(record.latency_ms),
        float(record.ttft_ms) if record.ttft_ms is not None else None,
    ]
