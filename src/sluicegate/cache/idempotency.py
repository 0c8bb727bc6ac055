"""Idempotent replay: a durable workflow may send the same call twice and pay for it once.

The first request with an `Idempotency-Key` claims the key and runs. A repeat with the same key and the
same body (streamed or not) gets the stored answer without calling the provider; the same key with another
body is refused with 422; a repeat that arrives while the first still runs waits for it. A request that
fails releases its key, so the workflow's retry runs again.

Keys are scoped to the caller's virtual key, so two tenants' keys never meet. Claims are leases: the process
that holds one renews it while the request runs, so a replica that dies frees its keys after `lease` seconds.
Within one process a repeat waits on an asyncio future; across replicas it polls the shared store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluicegate.cache.config import IdempotencyConfig
from sluicegate.errors import GatewayError, InvalidRequestError, ServiceUnavailableError

log = logging.getLogger("sluicegate.idempotency")

RUNNING = "running"
DONE = "done"
_POLL = 0.05
_MAX_KEY = 255


@dataclass(slots=True)
class Record:
    """A key someone else holds or finished: what `claim` returns instead of the claim."""

    fingerprint: str
    state: str
    owner: str
    body: bytes | None = None


class IdempotencyStore(Protocol):
    async def claim(self, key: str, fingerprint: str, owner: str, lease: float) -> Record | None:
        """Take `key` for `owner` (None) unless a live record holds it (that record)."""

    async def complete(self, key: str, owner: str, body: bytes, retention: float) -> None: ...

    async def release(self, key: str, owner: str) -> None: ...

    async def renew(self, keys: list[str], owner: str, lease: float) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True, eq=False)
class Claim:
    """A key this process holds while its request runs."""

    key: str
    fingerprint: str
    done: asyncio.Future[None]
    finished: bool = False
    #: set once the store holds the key (a claim that lost the race to another replica never held it)
    held: bool = False


class KeyConflictError(InvalidRequestError):
    status = 422
    code = "idempotency_key_reused"


class KeyInProgressError(GatewayError):
    status = 409
    type = "conflict_error"
    code = "idempotency_key_in_progress"


class Idempotency:
    def __init__(self, config: IdempotencyConfig, store: IdempotencyStore) -> None:
        self.config = config
        self.store = store
        self.owner = uuid.uuid4().hex
        self._local: dict[str, Claim] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()
        self._renewer = asyncio.create_task(self._renew_forever())

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.aclose()

    async def begin(self, header: str, scope: str | None, fingerprint: str) -> bytes | Claim:
        """The stored answer for a repeat, or the claim under which this request runs."""
        key = f"{scope or '-'}:{_checked(header)}"
        deadline = time.monotonic() + self.config.wait
        while True:
            local = self._local.get(key)
            if local is not None:
                if local.fingerprint != fingerprint:
                    raise _conflict(header)
                await self._wait(asyncio.shield(local.done), deadline, header)
                continue
            claim = Claim(key, fingerprint, asyncio.get_running_loop().create_future())
            self._local[key] = claim  # before any await: a concurrent repeat in this process waits on it
            try:
                record = await self._claim(key, fingerprint)
            except BaseException:
                self._forget(claim)
                raise
            if record is None:
                claim.held = True
                return claim
            self._forget(claim)
            if record.fingerprint != fingerprint:
                raise _conflict(header)
            if record.state == DONE and record.body is not None:
                return record.body
            # Running on another replica (or in a process that died and whose lease has not run out yet).
            await self._wait(asyncio.sleep(_POLL), deadline, header)

    async def complete(self, claim: Claim, body: bytes) -> None:
        if claim.finished:
            return
        claim.finished = True
        try:
            await self.store.complete(claim.key, self.owner, body, self.config.retention)
        except Exception:
            log.exception("could not store the answer for an idempotency key; a repeat will run again")
            await self._release(claim)
            return
        self._forget(claim)

    def abandon(self, claim: Claim) -> None:
        """The request failed or was cut off: free the key (in the background) so a retry runs again."""
        if claim.finished:
            return
        claim.finished = True
        task = asyncio.get_running_loop().create_task(self._release(claim))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, claim: Claim) -> None:
        try:
            await self.store.release(claim.key, self.owner)
        except Exception:
            log.warning("could not release an idempotency key; it frees itself after %.0fs", self.config.lease)
        finally:
            self._forget(claim)

    async def _claim(self, key: str, fingerprint: str) -> Record | None:
        try:
            return await self.store.claim(key, fingerprint, self.owner, self.config.lease)
        except GatewayError:
            raise
        except Exception as exc:
            # Running the request without its key could charge a workflow twice; refuse instead.
            log.warning("idempotency store unavailable: %s", exc)
            raise ServiceUnavailableError(
                "The idempotency store is unavailable; retry the request later with the same Idempotency-Key",
                code="idempotency_store_unavailable",
                retry_after=1,
            ) from None

    async def _wait(self, waiting: Any, deadline: float, header: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _discard(waiting)
            raise KeyInProgressError(
                f"A request with Idempotency-Key '{header}' is still in progress; retry later", retry_after=1
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiting, remaining)

    def _forget(self, claim: Claim) -> None:
        if self._local.get(claim.key) is claim:
            del self._local[claim.key]
        if not claim.done.done():
            claim.done.set_result(None)

    async def _renew_forever(self) -> None:
        interval = max(0.05, self.config.lease / 3)
        while True:
            await asyncio.sleep(interval)
            held = [claim.key for claim in self._local.values() if claim.held and not claim.finished]
            if not held:
                continue
            try:
                await self.store.renew(held, self.owner, self.config.lease)
            except Exception:
                log.warning("could not renew %d idempotency keys", len(held))


def _checked(header: str) -> str:
    key = header.strip()
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise InvalidRequestError(
            f"Idempotency-Key must be 1 to {_MAX_KEY} printable characters", code="invalid_idempotency_key"
        )
    return key


def _conflict(header: str) -> KeyConflictError:
    return KeyConflictError(
        f"The Idempotency-Key '{header}' was already used with a different request body. "
        "Send the same body to get the stored answer, or use a new key for a new request."
    )


def _discard(waiting: Any) -> None:
    if asyncio.isfuture(waiting):
        waiting.cancel()
    else:
        close = getattr(waiting, "close", None)
        if close is not None:
            close()


@dataclass(slots=True)
class _Stored:
    record: Record
    expires: float = field(default=0.0)


class MemoryStore:
    """Keys in this process only: for the library and tests, or a single replica that may forget on restart."""

    def __init__(self) -> None:
        self._items: dict[str, _Stored] = {}

    async def claim(self, key: str, fingerprint: str, owner: str, lease: float) -> Record | None:
        now = time.time()
        stored = self._items.get(key)
        if stored is not None and stored.expires > now:
            return stored.record
        self._items[key] = _Stored(Record(fingerprint, RUNNING, owner), now + lease)
        if len(self._items) > 10_000:
            self._items = {k: v for k, v in self._items.items() if v.expires > now}
        return None

    async def complete(self, key: str, owner: str, body: bytes, retention: float) -> None:
        stored = self._items.get(key)
        if stored is not None and stored.record.owner == owner:
            stored.record.state, stored.record.body = DONE, body
            stored.expires = time.time() + retention

    async def release(self, key: str, owner: str) -> None:
        stored = self._items.get(key)
        if stored is not None and stored.record.owner == owner and stored.record.state == RUNNING:
            del self._items[key]

    async def renew(self, keys: list[str], owner: str, lease: float) -> None:
        for key in keys:
            stored = self._items.get(key)
            if stored is not None and stored.record.owner == owner and stored.record.state == RUNNING:
                stored.expires = time.time() + lease

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def build_store(config: IdempotencyConfig, redis_url: str | None, database_url: str | None) -> IdempotencyStore:
    backend = config.backend
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        from sluicegate.cache.idempotency_sqlite import SQLiteStore

        return SQLiteStore(config.url or "sluicegate-idempotency.db", config.prefix)
    if backend == "redis":
        from sluicegate.cache.idempotency_redis import RedisStore

        return RedisStore(_required(config.url or redis_url, "redis"), config.prefix)
    if backend == "postgres":
        from sluicegate.cache.idempotency_postgres import PostgresStore

        return PostgresStore(_required(config.url or database_url, "postgres"), config.prefix)
    raise ValueError(f"unknown idempotency backend '{backend}'")


def _required(url: str | None, backend: str) -> str:
    if not url:
        fallback = "redis_url" if backend == "redis" else "database_url"
        raise ValueError(f"idempotency.backend {backend} needs idempotency.url (or the top-level {fallback})")
    return url
