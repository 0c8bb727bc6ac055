"""The in-process exact-cache backend: an LRU bounded by the bytes of the answers it holds."""

from __future__ import annotations

import time
from collections import OrderedDict


class MemoryBackend:
    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        #: key -> (expires at, monotonic seconds; value); oldest use first
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        size = len(value) + len(key)
        if size > self.max_bytes or ttl <= 0:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (time.monotonic() + ttl, value)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    async def delete(self, key: str) -> None:
        if key in self._items:
            self._drop(key)

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self.bytes -= len(value) + len(key)

    def __len__(self) -> int:
        return len(self._items)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self._items.clear()
        self.bytes = 0
