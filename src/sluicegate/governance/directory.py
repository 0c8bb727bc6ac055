"""Keys and teams as the hot path sees them: read from the store once, then served from memory.

A key is looked up by the hash of what the client sent. Found and missing keys are both remembered for
`governance.key_cache_ttl` seconds, so neither a busy client nor one hammering with made-up keys reaches
the database per request. Changes made through this gateway's admin API replace the cached entries at
once; other replicas see them when their entries expire.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from sluicegate.config import Config
from sluicegate.errors import ServiceUnavailableError
from sluicegate.governance.keys import KeyHasher, KeyRecord
from sluicegate.governance.store import DEFAULT_DATABASE_URL, Store, StoreUnavailable, open_store
from sluicegate.governance.teams import TeamRecord

log = logging.getLogger("sluicegate.governance")

#: made-up keys remembered at most; past that the memory of misses starts over
_MAX_MISSES = 10_000


class Directory:
    def __init__(self, config: Config, *, has_master_key: bool) -> None:
        governance = config.governance
        url = config.database_url or (DEFAULT_DATABASE_URL if has_master_key else None)
        self.store: Store | None = open_store(url) if url else None
        self.hasher = KeyHasher(governance.key_pepper)
        self.ttl = governance.key_cache_ttl
        self._by_hash: dict[str, tuple[float, KeyRecord | None]] = {}
        self._by_id: dict[str, KeyRecord] = {}
        self._teams: dict[str, tuple[float, TeamRecord | None]] = {}
        self._loading: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._misses = 0

    async def start(self) -> None:
        if self.store is not None:
            await self.store.open()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.close()

    # --- the hot path --------------------------------------------------------------------------

    async def find_key(self, key: str) -> KeyRecord | None:
        """The record of the virtual key `key`, or None when there is no such key."""
        if self.store is None:
            return None
        digest = self.hasher.hash(key)
        cached = self._by_hash.get(digest)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            record = cached[1]
        else:
            record = await self._load(digest)
        # The lookup was by hash; compare once more in constant time rather than trust the index alone.
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return None
        return record

    def key(self, key_id: str) -> KeyRecord | None:
        """The record of a key that authenticated a moment ago (no I/O)."""
        return self._by_id.get(key_id)

    async def team(self, name: str) -> TeamRecord | None:
        cached = self._teams.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        if self.store is None:
            return None
        try:
            team = await self.store.get_team(name)
        except StoreUnavailable as exc:
            if cached is not None:
                return cached[1]  # serve the last known limits rather than none while the database is away
            raise _unavailable(exc) from None
        self._teams[name] = (time.monotonic(), team)
        return team

    async def _load(self, digest: str) -> KeyRecord | None:
        # Concurrent first requests with one key share one query.
        loading = self._loading.get(digest)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            assert self.store is not None
            record = await self.store.key_by_hash(digest)
        except StoreUnavailable as exc:
            future.set_exception(_unavailable(exc))
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise _unavailable(exc) from None
        finally:
            del self._loading[digest]
        future.set_result(record)
        self._remember(digest, record)
        return record

    def _remember(self, digest: str, record: KeyRecord | None) -> None:
        if record is None:
            self._misses += 1
            if self._misses > _MAX_MISSES:
                self._by_hash = {h: entry for h, entry in self._by_hash.items() if entry[1] is not None}
                self._misses = 0
        else:
            self._by_id[record.id] = record
        self._by_hash[digest] = (time.monotonic(), record)

    # --- changes made through the admin API ----------------------------------------------------

    def forget_key(self, record: KeyRecord, *, old_hash: str | None = None) -> None:
        """Replace what is cached for this key after it changed here."""
        for digest in (old_hash, record.key_hash):
            if digest is not None:
                self._by_hash.pop(digest, None)
        self._by_id[record.id] = record

    def forget_team(self, name: str) -> None:
        self._teams.pop(name, None)


def _unavailable(exc: StoreUnavailable) -> ServiceUnavailableError:
    log.error("the key store is unavailable: %s", exc)
    return ServiceUnavailableError(
        "The gateway cannot check API keys right now (its database is unreachable); retry shortly",
        code="key_store_unavailable",
        retry_after=1.0,
    )
