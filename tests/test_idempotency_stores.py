"""Every idempotency store keeps the same contract, and replicas sharing one wait for each other.

SQLite and memory always run; Redis and PostgreSQL are service tests (their own key prefix / table).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.cache.config import IdempotencyConfig
from sluicegate.cache.idempotency import (
    DONE,
    RUNNING,
    Claim,
    Idempotency,
    IdempotencyStore,
    KeyConflictError,
    KeyInProgressError,
    MemoryStore,
    build_store,
)
from tests.services import database_url, redis_url

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.service),
    pytest.param("postgres", marks=pytest.mark.service),
]


def _config(backend: str, tmp_path: Path, **extra: Any) -> IdempotencyConfig:
    prefix = f"sluicegate_test_idem_{uuid.uuid4().hex[:10]}"
    url = {"sqlite": str(tmp_path / "keys.db"), "memory": None}.get(backend)
    if backend == "redis":
        url = redis_url()
    elif backend == "postgres":
        url = database_url()
    return IdempotencyConfig(backend=backend, url=url, prefix=prefix, **extra)


async def _cleanup(store: IdempotencyStore, backend: str, prefix: str) -> None:
    if backend == "redis":
        client: Any = store.client  # type: ignore[attr-defined]
        async for key in client.scan_iter(f"{prefix}:*"):
            await client.delete(key)
    elif backend == "postgres":
        await store._pool.execute(f"DROP TABLE IF EXISTS {prefix}")  # type: ignore[attr-defined]


@pytest.fixture(params=BACKENDS)
async def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, IdempotencyConfig]]:
    yield request.param, _config(request.param, tmp_path)


async def _open(config: IdempotencyConfig) -> IdempotencyStore:
    store = build_store(config, None, None)
    await store.start()
    return store


async def test_store_contract(store_config: tuple[str, IdempotencyConfig]) -> None:
    backend, config = store_config
    store = await _open(config)
    try:
        assert await store.claim("k", "f1", "owner-a", 30) is None
        held = await store.claim("k", "f1", "owner-b", 30)
        assert held is not None and (held.state, held.owner, held.fingerprint) == (RUNNING, "owner-a", "f1")
        await store.complete("k", "owner-b", b"not yours", 60)  # only the owner may complete
        await store.release("k", "owner-b")  # or release
        still = await store.claim("k", "f1", "owner-b", 30)
        assert still is not None and still.state == RUNNING
        await store.complete("k", "owner-a", b'{"answer": 1}', 60)
        done = await store.claim("k", "f1", "owner-b", 30)
        assert done is not None and (done.state, done.body) == (DONE, b'{"answer": 1}')
        await store.release("k", "owner-a")  # a finished key is never released
        assert (await store.claim("k", "f1", "owner-b", 30)) is not None

        assert await store.claim("gone", "f", "owner-a", 30) is None
        await store.release("gone", "owner-a")
        assert await store.claim("gone", "f", "owner-b", 30) is None  # released: free for a retry
    finally:
        await _cleanup(store, backend, config.prefix)
        await store.aclose()


async def test_an_expired_lease_frees_the_key_and_renewal_keeps_it(store_config: tuple[str, IdempotencyConfig]) -> None:
    backend, config = store_config
    store = await _open(config)
    try:
        assert await store.claim("crashed", "f", "dead-replica", 0.2) is None
        assert await store.claim("alive", "f", "live-replica", 0.2) is None
        for _ in range(3):
            await asyncio.sleep(0.1)
            await store.renew(["alive"], "live-replica", 0.2)
        assert await store.claim("crashed", "f", "next", 30) is None  # its holder stopped renewing
        alive = await store.claim("alive", "f", "next", 30)
        assert alive is not None and alive.owner == "live-replica"
    finally:
        await _cleanup(store, backend, config.prefix)
        await store.aclose()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"])  # memory is one process's own
async def test_replicas_sharing_a_store_wait_for_each_other(backend: str, tmp_path: Path) -> None:
    config = _config(backend, tmp_path)
    first = Idempotency(config, build_store(config, None, None))
    second = Idempotency(config, build_store(config, None, None))
    await first.start()
    await second.start()
    try:
        claim = await first.begin("order-42", "key-1", "body-1")
        assert isinstance(claim, Claim)
        waiting = asyncio.create_task(second.begin("order-42", "key-1", "body-1"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the other replica's request is still running
        with pytest.raises(KeyConflictError):
            await second.begin("order-42", "key-1", "another body")
        await first.complete(claim, b'{"id": "answer"}')
        assert await asyncio.wait_for(waiting, 5) == b'{"id": "answer"}'

        failing = await first.begin("order-43", "key-1", "body")
        assert isinstance(failing, Claim)
        retry = asyncio.create_task(second.begin("order-43", "key-1", "body"))
        first.abandon(failing)  # the first attempt failed: the retry on the other replica runs
        assert isinstance(await asyncio.wait_for(retry, 5), Claim)
    finally:
        await _cleanup(first.store, backend, config.prefix)
        await first.aclose()
        await second.aclose()


async def test_a_repeat_gives_up_with_409_after_waiting(tmp_path: Path) -> None:
    config = IdempotencyConfig(backend="memory", wait=0.2)
    idempotency = Idempotency(config, MemoryStore())
    await idempotency.start()
    try:
        assert isinstance(await idempotency.begin("slow", None, "body"), Claim)
        with pytest.raises(KeyInProgressError) as caught:
            await idempotency.begin("slow", None, "body")
        assert caught.value.status == 409 and caught.value.code == "idempotency_key_in_progress"
    finally:
        await idempotency.aclose()
