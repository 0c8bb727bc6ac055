"""The request log store: a recorder sink that writes every finished request and its rollups in batches.

`emit` appends the record to a bounded queue (O(1), never blocks). A background task turns batches into
rows and rollup sums and writes them in one transaction; while the database is slow or down the queue keeps
the newest records up to `max_queue` and counts what it had to drop. Another task applies retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sluicegate.context import RequestRecord
from sluicegate.observability.config import LogStoreConfig
from sluicegate.observability.logstore import queries, schema
from sluicegate.observability.logstore.backends import Backend, Batch, open_backend
from sluicegate.observability.queue import BatchQueue

log = logging.getLogger("sluicegate.observability")

DEFAULT_URL = "sqlite:///sluicegate.db"
_RETENTION_EVERY = 3600.0
#: rows deleted per statement, so retention never holds a long lock
_DELETE_CHUNK = 10_000


def resolve_url(settings: LogStoreConfig, database_url: str | None) -> str | None:
    """The database the log store writes to, or None when it is off."""
    if settings.enabled is False:
        return None
    url = settings.database_url or database_url
    if url is None and settings.enabled:
        url = DEFAULT_URL
    return url


class LogStore:
    def __init__(self, url: str, settings: LogStoreConfig, *, include_prompts: bool = False) -> None:
        self.url = url
        self.settings = settings
        self.backend: Backend = open_backend(url)
        self._include_prompts = include_prompts
        self.queue: BatchQueue[RequestRecord] = BatchQueue(
            "log-store",
            self._write,
            max_items=settings.max_queue,
            batch_size=settings.batch_size,
            interval=settings.flush_interval,
        )
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._retention: asyncio.Task[None] | None = None

    # --- the sink ----------------------------------------------------------------------------------

    def emit(self, record: RequestRecord) -> None:
        self.queue.put(record)

    async def start(self) -> None:
        await self.queue.start()
        self._retention = asyncio.create_task(self._retention_loop(), name="sluicegate-logstore-retention")

    async def aclose(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        await self.queue.aclose()
        if self._opened:
            await self.backend.close()
            self._opened = False

    async def flush(self) -> None:
        """Write what is queued now (tests, shutdown)."""
        await self.queue.drain()

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:
                # A database that is down at start-up must not stop the gateway: the writer retries.
                await self.backend.open()
                self._opened = True

    async def _write(self, records: list[RequestRecord]) -> None:
        await self._ensure_open()
        # Building rows and rollup sums is CPU work: done in a worker thread, the event loop keeps serving.
        await self.backend.write(await asyncio.to_thread(self.batch, records))

    def batch(self, records: list[RequestRecord]) -> Batch:
        rows = [schema.log_row(record, self._include_prompts) for record in records]
        groups, attempts = schema.rollup_groups(records)
        upserts = [(schema.upsert_sql(rollup), schema.upsert_rows(groups[rollup])) for rollup in schema.ROLLUPS]
        if attempts:
            upserts.append(
                (schema.upsert_attempts_sql(), [(b, d, n, f) for (b, d), (n, f) in sorted(attempts.items())])
            )
        return rows, upserts

    # --- retention ---------------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self._ensure_open()
                await self.apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("log store retention failed: %s", exc)
            await asyncio.sleep(_RETENTION_EVERY)

    async def apply_retention(self, now: float | None = None) -> int:
        """Delete request rows and rollups past their retention; returns the number of request rows deleted."""
        await self._ensure_open()
        now = time.time() if now is None else now
        cutoff = now - self.settings.retention_days * 86400
        deleted = 0
        while True:
            count = await self.backend.execute(
                f"DELETE FROM {schema.LOGS} WHERE id IN "
                f"(SELECT id FROM {schema.LOGS} WHERE ts < ? ORDER BY ts LIMIT {_DELETE_CHUNK})",
                [cutoff],
            )
            deleted += count
            if count < _DELETE_CHUNK:
                break
        minute_cutoff = int(now - schema.MINUTE_ROLLUP_RETENTION)
        hour_cutoff = int(now - self.settings.rollup_retention_days * 86400)
        for rollup in schema.ROLLUPS:
            cutoff_bucket = minute_cutoff if rollup.resolution == schema.MINUTE else hour_cutoff
            await self.backend.execute(f"DELETE FROM {rollup.table} WHERE bucket < ?", [cutoff_bucket])
        await self.backend.execute(f"DELETE FROM {schema.ATTEMPTS} WHERE bucket < ?", [minute_cutoff])
        return deleted

    # --- reading -----------------------------------------------------------------------------------

    async def recent(self, where: queries.RequestFilter) -> list[dict[str, Any]]:
        await self._ensure_open()
        return await queries.recent(self.backend, where)

    async def get(self, request_id: str) -> dict[str, Any] | None:
        await self._ensure_open()
        return await queries.by_request_id(self.backend, request_id)

    async def series(self, seconds: int, group: str | None = None, now: float | None = None) -> dict[str, Any]:
        await self._ensure_open()
        return await queries.series(self.backend, seconds, time.time() if now is None else now, group)

    async def totals_by(self, group: str, seconds: int, now: float | None = None) -> list[dict[str, Any]]:
        await self._ensure_open()
        return await queries.totals_by(self.backend, group, seconds, time.time() if now is None else now)

    async def attempt_health(self, seconds: int = 900, now: float | None = None) -> dict[str, dict[str, int]]:
        await self._ensure_open()
        return await queries.attempt_health(self.backend, seconds, time.time() if now is None else now)
