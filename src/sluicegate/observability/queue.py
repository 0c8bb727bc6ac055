"""A bounded hand-off from the hot path to a background writer.

`put` is O(1) and never blocks or awaits: the request that finished only appends to a deque. A task on the
event loop takes batches off it and awaits the sink's `flush`. When the writer cannot keep up (a slow or
dead database, an unreachable webhook) memory stays bounded: the oldest records are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("sluicegate.observability")

#: longest pause between retries of a failing writer
_MAX_BACKOFF = 30.0


class BatchQueue(Generic[T]):
    def __init__(
        self,
        name: str,
        flush: Callable[[list[T]], Awaitable[None]],
        *,
        max_items: int,
        batch_size: int,
        interval: float,
        requeue_on_error: bool = True,
        close_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._flush = flush
        self._items: deque[T] = deque(maxlen=max(1, max_items))
        self._batch_size = max(1, batch_size)
        self._interval = interval
        self._requeue = requeue_on_error
        self._close_timeout = close_timeout
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        #: one flush at a time, so batches are written in order and `drain` can wait for the writer's
        self._flushing = asyncio.Lock()
        #: records lost because the queue was full (or, without requeueing, because a flush failed)
        self.dropped = 0
        self.written = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        items = self._items
        if len(items) == items.maxlen:
            self.dropped += 1  # the append below pushes out the oldest
        items.append(item)
        # While the writer is failing it backs off on its own clock; arrivals must not wake it early.
        if self._wake is not None and not self._failures and len(items) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"sluicegate-{self.name}-writer")

    async def aclose(self) -> None:
        """Stop the writer after one last attempt to write what is queued (bounded by `close_timeout`)."""
        task, self._task = self._task, None
        self._closing = True
        if task is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(task, self._close_timeout)
            except TimeoutError:
                log.warning("%s: gave up flushing after %.0f s", self.name, self._close_timeout)
        if self._items:
            log.warning("%s: %d records were not written before shutdown", self.name, len(self._items))
            self.dropped += len(self._items)
            self._items.clear()

    async def drain(self) -> None:
        """Write everything queued now, including a batch the writer task is busy with (tests, shutdown)."""
        while self._items:
            if not await self._flush_one():
                return
        async with self._flushing:
            pass

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._pause())
            self._wake.clear()
            while self._items:
                if not await self._flush_one():
                    break
                if not self._closing and len(self._items) < self._batch_size:
                    break  # a partial batch waits for the next tick: fewer, larger writes
            if self._closing and (not self._items or self._failures):
                return

    def _pause(self) -> float:
        if self._failures:
            return min(_MAX_BACKOFF, self._interval * 2.0 ** min(self._failures, 16))
        return self._interval

    async def _flush_one(self) -> bool:
        async with self._flushing:
            return await self._flush_batch()

    async def _flush_batch(self) -> bool:
        items = self._items
        if not items:
            return True
        batch = [items.popleft() for _ in range(min(self._batch_size, len(items)))]
        try:
            await self._flush(batch)
        except asyncio.CancelledError:
            self._put_back(batch)
            raise
        except Exception as exc:
            self._failures += 1
            if self._requeue:
                self._put_back(batch)
            else:
                self.dropped += len(batch)
            log.warning("%s: writing %d records failed (%s); %d queued", self.name, len(batch), exc, len(items))
            return False
        self._failures = 0
        self.written += len(batch)
        return True

    def _put_back(self, batch: list[T]) -> None:
        """Return a failed batch to the front of the queue, keeping only the newest `maxlen` records."""
        items = self._items
        room = (items.maxlen or 0) - len(items)
        if room < len(batch):
            self.dropped += len(batch) - room
            batch = batch[len(batch) - room :] if room > 0 else []
        items.extendleft(reversed(batch))
