"""The limiter's auto-pipeline on the real Redis: batching, order, errors kept to their callers, recovery."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from sluicegate.autopipe import AutoPipeline
from sluicegate.governance.limits import RPM, TPM, Check, RedisLimiter
from tests.services import redis_url
from tests.test_cache_redis import OwnRedis

pytestmark = pytest.mark.service


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url(), socket_timeout=2)
    yield connection
    await connection.aclose()


async def test_commands_issued_together_go_out_as_one_batch_in_order() -> None:
    own = OwnRedis()  # its own server, so that no other client's reads are counted
    own.start()
    connection = aioredis.Redis.from_url(own.url, socket_timeout=2)
    pipe = AutoPipeline(connection, 2.0)
    try:
        before = await connection.info("stats")
        replies = await asyncio.gather(*(pipe.call("RPUSH", "list", str(i)) for i in range(200)))
        after = await connection.info("stats")
        # each RPUSH returns the list's length: the replies prove Redis ran them in the order issued
        assert replies == list(range(1, 201))
        assert await connection.lrange("list", 0, -1) == [str(i).encode() for i in range(200)]
        # 200 commands in a handful of socket reads (the connection handshake and INFO take a few), not 200
        reads = after["total_reads_processed"] - before["total_reads_processed"]
        assert 1 <= reads <= 10, reads
    finally:
        await pipe.aclose()
        await connection.aclose()
        own.stop()


async def test_an_error_reply_fails_only_its_own_caller(client: aioredis.Redis) -> None:
    key = f"sluicegate:test:autopipe:{uuid.uuid4().hex}"
    pipe = AutoPipeline(client, 2.0)
    try:
        results = await asyncio.gather(
            pipe.call("SET", key, "1"),
            pipe.call("EVALSHA", "0" * 40, 0),  # no such script
            pipe.call("INCR", key),
            return_exceptions=True,
        )
        assert results[0] is True or results[0] == b"OK"
        assert isinstance(results[1], redis.exceptions.NoScriptError)
        assert results[2] == 2
    finally:
        await client.delete(key)
        await pipe.aclose()


async def test_a_lost_connection_fails_the_batch_and_the_next_call_reconnects() -> None:
    own = OwnRedis()
    own.start()
    connection = aioredis.Redis.from_url(own.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    pipe = AutoPipeline(connection, 2.0)
    try:
        assert await pipe.call("PING") in (True, b"PONG")
        own.stop()
        failed = await asyncio.gather(pipe.call("PING"), pipe.call("PING"), return_exceptions=True)
        assert all(isinstance(result, (redis.exceptions.RedisError, OSError)) for result in failed), failed
        own.start()
        assert await pipe.call("SET", "k", "v") in (True, b"OK")
        assert await pipe.call("GET", "k") == b"v"
    finally:
        await pipe.aclose()
        await connection.aclose()
        own.stop()


async def test_a_cancelled_caller_does_not_break_the_others(client: aioredis.Redis) -> None:
    pipe = AutoPipeline(client, 2.0)
    try:
        first = pipe.call("PING")
        cancelled = pipe.call("PING")
        cancelled.cancel()
        last = pipe.call("ECHO", "still here")
        assert await first in (True, b"PONG")
        assert await last == b"still here"
    finally:
        await pipe.aclose()


async def test_the_limiter_loads_its_scripts_again_when_redis_lost_them() -> None:
    own = OwnRedis()
    own.start()
    limiter = RedisLimiter(own.url, prefix="t:", timeout=1.0, failure="closed", lease_seconds=900, budget_refresh=30)
    checks = [Check("alias:a:rpm", RPM, 5, "alias 'a'"), Check("alias:a:tpm", TPM, 1000, "alias 'a'")]
    try:
        await limiter.start()
        first = await limiter.acquire(checks, 10, "lease-1")
        await first.settle(5, 0.0)
        await limiter._redis.script_flush()  # as after a restart of a Redis that keeps nothing
        second = await limiter.acquire(checks, 10, "lease-2")
        assert second.requests is not None and second.requests.remaining == 3  # the first one still counts
        assert second.tokens_quota is not None and second.tokens_quota.remaining == 1000 - 15 - 10
    finally:
        await limiter.aclose()
        own.stop()


async def test_a_hung_redis_costs_the_limiter_one_timeout_then_it_falls_back_and_recovers() -> None:
    own = OwnRedis()
    own.start()
    limiter = RedisLimiter(own.url, prefix="t:", timeout=0.3, failure="local", lease_seconds=900, budget_refresh=30)
    checks = [Check("alias:a:rpm", RPM, 100, "alias 'a'")]
    assert own.process is not None
    try:
        await limiter.start()
        assert (await limiter.acquire(checks, 0, "lease-1")).limiter is limiter
        own.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        started = time.monotonic()
        grants = await asyncio.gather(*(limiter.acquire(checks, 0, f"lease-{i}") for i in range(20)))
        waited = time.monotonic() - started
        assert waited < 1.0, waited  # one timeout for the whole batch, not one per request
        assert all(grant.limiter is not limiter for grant in grants)  # counted locally meanwhile
        own.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(1.1)  # the limiter tries Redis again a second after it failed
        assert (await limiter.acquire(checks, 0, "lease-after")).limiter is limiter
    finally:
        if own.process is not None:
            own.process.send_signal(signal.SIGCONT)
        await limiter.aclose()
        own.stop()
