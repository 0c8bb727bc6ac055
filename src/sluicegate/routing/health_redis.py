"""Breaker states shared by every replica through Redis, without a Redis call on the request path.

The router reads breaker states synchronously for every candidate, so this store keeps a local mirror
and talks to Redis only in the background:

- `put` (a transition: open, probe started, closed) updates the mirror at once and queues the new state;
  a writer task stores it in one Redis hash (`HSET`/`HDEL`) and announces it on a channel (`PUBLISH`);
- a reader task applies the other replicas' announcements as they arrive, and re-reads the whole hash
  every `refresh` seconds (`HGETALL`) to repair anything a dropped connection made it miss.

So a request costs no Redis operation; a replica costs one `HGETALL` per `refresh` plus two writes per
transition.

Redis down is fail-open: the mirror keeps working as this replica's own state (exactly the in-process
behaviour), transitions made meanwhile stay queued (the latest per deployment) and are written when Redis
answers again; both tasks retry every `backoff` seconds, so the store recovers without a restart. The
outage is logged once when it starts and once when it ends.

Two replicas may start a half-open probe of the same deployment within one publish delay of each other
(a few milliseconds): at worst one extra request reaches a deployment that is still recovering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from sluicegate.errors import ConfigurationError
from sluicegate.routing.health import BreakerState, HealthStore, MemoryHealthStore

if TYPE_CHECKING:
    from sluicegate.config import Config

log = logging.getLogger("sluicegate.routing")

#: the hash of breaker states and the channel of transitions are `<prefix>states` and `<prefix>events`
DEFAULT_PREFIX = "sluicegate:gov:health:"


def _encode(key: str, state: BreakerState | None) -> bytes:
    return json.dumps({"k": key, "s": None if state is None else _fields_list(state)}).encode()


def _decode_state(body: Any) -> BreakerState | None:
    if not isinstance(body, list) or len(body) != 4:
        return None
    reason, until, probing, started = body
    return BreakerState(str(reason), float(until), bool(probing), float(started))


class RedisHealthStore(MemoryHealthStore):
    """A `HealthStore` mirrored locally and shared through Redis (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        refresh: float = 1.0,
        backoff: float = 1.0,
        timeout: float = 1.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "redis_url is set but redis is not installed: pip install 'sluicegate[redis]'"
            ) from None
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        self._hash = prefix + "states"
        self._channel = prefix + "events"
        self.refresh = refresh
        self.backoff = backoff
        super().__init__()
        #: transitions not yet written to Redis, the latest per deployment
        self._pending: dict[str, BreakerState | None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: false while Redis cannot be reached: the mirror is then this replica's own view
        self.connected = False
        self._down_logged = False
        self._stopping = False

    # --- HealthStore: synchronous, local ----------------------------------------------------------

    def put(self, key: str, state: BreakerState | None) -> None:
        super().put(key, state)
        # A copy: Health mutates states in place, and the queued value must be the one of this transition.
        self._pending[key] = None if state is None else BreakerState(**_fields(state))
        self._wake.set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        if self._pending:
            self._wake.set()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="health-redis-writer"),
            asyncio.create_task(self._read_loop(), name="health-redis-reader"),
        ]

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        if self._pending and tasks:
            # Best effort: hand the last transitions to the other replicas before leaving.
            with contextlib.suppress(*self._errors):
                await asyncio.wait_for(self._flush(), self.backoff)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a client library that turned the cancellation into a connection error must not
            # keep the shutdown waiting (the loops also stop on `_stopping`).
            await asyncio.wait(tasks, timeout=2.0)
        with contextlib.suppress(*self._errors):
            await self._redis.aclose()

    # --- background -------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except self._errors as exc:
                self._down(exc)
                await asyncio.sleep(self.backoff)
                self._wake.set()

    async def _flush(self) -> None:
        while self._pending:
            batch = dict(self._pending)
            pipe = self._redis.pipeline(transaction=False)
            for key, state in batch.items():
                if state is None:
                    pipe.hdel(self._hash, key)
                else:
                    pipe.hset(self._hash, key, json.dumps(_fields_list(state)))
                pipe.publish(self._channel, _encode(key, state))
            await pipe.execute()
            for key, state in batch.items():
                # Only forget what was written: a newer transition queued meanwhile stays pending.
                if key in self._pending and self._pending[key] is state:
                    del self._pending[key]
            self._up()

    async def _read_loop(self) -> None:
        while not self._stopping:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                await self._sync()
                next_sync = time.monotonic() + self.refresh
                while not self._stopping:
                    message = await pubsub.get_message(timeout=self.refresh)
                    if message is not None and message.get("type") == "message":
                        self._apply(message["data"])
                    if time.monotonic() >= next_sync:
                        await self._sync()
                        next_sync = time.monotonic() + self.refresh
            except self._errors as exc:
                self._down(exc)
                await asyncio.sleep(self.backoff)
            finally:
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()

    async def _sync(self) -> None:
        remote = await self._redis.hgetall(self._hash)
        states: dict[str, BreakerState] = {}
        for raw_key, raw in remote.items():
            with contextlib.suppress(ValueError, TypeError):
                state = _decode_state(json.loads(raw))
                if state is not None:
                    states[raw_key.decode()] = state
        # Transitions of this replica that Redis has not seen yet win over what it holds.
        for key, pending in self._pending.items():
            if pending is None:
                states.pop(key, None)
            elif key in self._states:
                states[key] = self._states[key]
        self._states = states
        self._up()

    def _apply(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            key = str(message["k"])
            state = _decode_state(message["s"])
        except (ValueError, TypeError, KeyError):
            return
        if key in self._pending:
            return  # this replica has a newer transition on its way
        super().put(key, state)  # the mirror only: another replica's transition is not written back

    def _down(self, exc: BaseException) -> None:
        self.connected = False
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "Redis for shared circuit breakers failed (%s); using this replica's own breaker states, "
                "retrying every %.0fs",
                type(exc).__name__,
                self.backoff,
            )

    def _up(self) -> None:
        self.connected = True
        if self._down_logged:
            self._down_logged = False
            log.info("Redis for shared circuit breakers is back; breaker states are shared again")


def build_health_store(config: Config) -> HealthStore | None:
    """The shared store when `redis_url` is set; None keeps the router's in-process default.

    Its keys sit under `governance.redis_prefix` (`<prefix>health:states`, `<prefix>health:events`), so one
    setting separates two gateway installations sharing a Redis."""
    if not config.redis_url:
        return None
    return RedisHealthStore(config.redis_url, prefix=config.governance.redis_prefix + "health:")


async def start_store(store: HealthStore) -> None:
    if isinstance(store, RedisHealthStore):
        await store.start()


async def close_store(store: HealthStore) -> None:
    if isinstance(store, RedisHealthStore):
        await store.aclose()


def _fields(state: BreakerState) -> dict[str, Any]:
    return {
        "reason": state.reason,
        "until": state.until,
        "probing": state.probing,
        "probe_started": state.probe_started,
    }


def _fields_list(state: BreakerState) -> list[Any]:
    return [state.reason, state.until, state.probing, state.probe_started]
