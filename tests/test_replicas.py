"""Three gateway processes sharing Redis and PostgreSQL behave as one gateway, and survive losing one.

The client spreads the load round-robin over the three ports (what a load balancer does). Everything
shared lives under this module's own Redis key prefix and PostgreSQL schema, removed at the end; the
Redis outage test runs a redis-server of its own on a free port.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.server import Fault
from tests.governance_support import Admin, GatewayProcess, chat, chat_config, create_pg_schema, drop_pg_schema
from tests.services import database_url, redis_url
from tests.test_cache_redis import OwnRedis

pytestmark = pytest.mark.service

#: the fake's usage (11 prompt + 7 completion tokens) at gpt-4o's $2.50 / $10 per 1M tokens
SMART_COST = (11 * 2.50 + 7 * 10.00) / 1e6


def replica_config(fake: Any, redis: str, database: str | None, prefix: str) -> dict[str, Any]:
    config = chat_config(
        fake,
        database_url=database,
        redis_url=redis,
        governance={"redis_prefix": prefix, "spend_flush_interval": 0.2},
        cache={"backend": "redis", "namespace": prefix + "cache"},
    )
    config["models"][1]["cache"] = True  # `cheap` is cached
    config["models"].append(
        {
            "name": "fragile",
            "deployments": [{"provider": "up", "model": "gpt-4o-fragile"}],
            "routing": {"cooldown": {"failures": 2, "min_error_rate": 0, "duration": 60}},
        }
    )
    return config


@pytest.fixture(scope="module")
def replicas(_fake_openai_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    redis, base = redis_url(), database_url()
    workdir = tmp_path_factory.mktemp("replicas")
    url, schema = asyncio.run(create_pg_schema(base))
    prefix = f"sluicegate:test:replicas:{uuid.uuid4().hex[:12]}:"
    config = replica_config(_fake_openai_server, redis, url, prefix)
    # The first creates the schema alone; the others start on it.
    processes = [GatewayProcess(config, workdir, "replica-0")]
    try:
        processes += [GatewayProcess(config, workdir, f"replica-{i}", wait=False) for i in (1, 2)]
        for process in processes[1:]:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            process.stop()
        asyncio.run(drop_pg_schema(base, schema))
        import redis as redis_client

        client = redis_client.Redis.from_url(redis)
        for name in client.scan_iter(prefix + "*"):
            client.delete(name)
        client.close()


async def spread(urls: list[str], key: str, count: int, model: str = "smart") -> list[int]:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as client:

        async def one(i: int) -> int:
            try:
                return (await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body)).status_code
            except httpx.HTTPError:
                return 0  # the replica was killed under this request

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def wait_spend(admin: Admin, requests: int, **params: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    spend = admin.spend("key", **params)
    while spend["requests"] < requests and time.monotonic() < deadline:
        time.sleep(0.1)
        spend = admin.spend("key", **params)
    return spend


def test_one_global_rpm_limit_across_three_replicas(replicas: list[GatewayProcess]) -> None:
    limit = 90
    key = Admin(replicas[0].base_url).create_key(name="fleet", rpm_limit=limit)["key"]
    codes = asyncio.run(spread([r.base_url for r in replicas], key, 2 * limit))
    accepted = codes.count(200)
    assert abs(accepted - limit) <= 0.02 * limit, accepted
    assert codes.count(429) == 2 * limit - accepted
    spend = wait_spend(Admin(replicas[2].base_url), 2 * limit)
    assert spend["requests"] == 2 * limit
    assert spend["total_cost_usd"] == pytest.approx(accepted * SMART_COST)


def test_one_budget_enforced_once_across_three_replicas(replicas: list[GatewayProcess]) -> None:
    admin = Admin(replicas[1].base_url)
    admin.create_team(name="fleet-budget", budget={"amount_usd": 0.001, "period": "daily"})
    key = admin.create_key(name="budgeted", team="fleet-budget")["key"]
    # the team's spend before request n is (n - 1) * SMART_COST: requests 1..11 start under $0.001
    codes = [chat(replicas[i % 3].base_url, key).status_code for i in range(15)]
    assert codes[:11] == [200] * 11 and codes[11:] == [429] * 4
    assert chat(replicas[0].base_url, key).json()["error"]["code"] == "budget_exceeded"


def test_a_cache_entry_written_by_one_replica_is_a_hit_on_another(replicas: list[GatewayProcess]) -> None:
    key = Admin(replicas[0].base_url).create_key(name="cached")["key"]
    marker = uuid.uuid4().hex
    first = chat(replicas[0].base_url, key, model="cheap", user=marker)
    assert first.status_code == 200 and first.headers["x-sluicegate-cache"] == "miss"
    for other in replicas[1:]:
        again = chat(other.base_url, key, model="cheap", user=marker)
        assert again.status_code == 200 and again.headers["x-sluicegate-cache"] == "hit"
        assert again.json()["choices"] == first.json()["choices"]


def test_a_circuit_opened_on_one_replica_is_respected_by_the_others(
    replicas: list[GatewayProcess], fake_openai: Any
) -> None:
    key = Admin(replicas[0].base_url).create_key(name="breaker")["key"]
    fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
    assert [chat(replicas[0].base_url, key, model="fragile").status_code for _ in range(2)] == [502, 502]
    sent = len(fake_openai.requests)
    assert sent == 2
    deadline = time.monotonic() + 5
    refused: list[int] = []
    for other in replicas[1:]:
        while True:
            answer = chat(other.base_url, key, model="fragile")
            if answer.status_code != 200 or time.monotonic() > deadline:
                break
            sent += 1  # announced a moment later than this request: it reached the upstream
            time.sleep(0.05)
        refused.append(answer.status_code)
    assert all(code in (429, 503) for code in refused), refused
    # the refusals never reached the upstream: the other replicas honoured replica 0's circuit
    assert len(fake_openai.requests) == sent


def test_kill_9_one_replica_mid_load(replicas: list[GatewayProcess]) -> None:
    admin = Admin(replicas[0].base_url)
    survivors, victim = replicas[:2], replicas[2]
    key = admin.create_key(name="survivors")["key"]

    async def load() -> list[int]:
        task = asyncio.create_task(spread([r.base_url for r in replicas], key, 150))
        await asyncio.sleep(0.05)
        victim.process.send_signal(signal.SIGKILL)
        return await task

    codes = asyncio.run(load())
    assert victim.process.wait(10) == -signal.SIGKILL
    # the two others keep serving everything sent to them
    after = asyncio.run(spread([r.base_url for r in survivors], key, 60))
    assert after == [200] * 60
    by_survivors = sum(code == 200 for i, code in enumerate(codes) if i % 3 != 2) + 60
    by_victim = sum(code == 200 for i, code in enumerate(codes) if i % 3 == 2)
    deadline = time.monotonic() + 10
    while (row := key_spend(Admin(survivors[1].base_url), "survivors"))["requests"] < by_survivors:
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    # Nothing charged twice, nothing the survivors answered lost. The victim loses what it had not yet
    # written (at most `spend_flush_interval` of its answers: the governance spend writer's documented bound).
    assert by_survivors <= row["requests"] <= by_survivors + by_victim
    assert row["cost_usd"] == pytest.approx(row["requests"] * SMART_COST)


def key_spend(admin: Admin, name: str) -> dict[str, Any]:
    rows = [row for row in admin.spend("key")["data"] if row["name"] == name]
    return rows[0] if rows else {"requests": 0, "cost_usd": 0.0}


def test_redis_stopped_and_restarted_breakers_fail_open_and_recover(
    fake_openai: Any, tmp_path: Path, _fake_openai_server: Any
) -> None:
    own = OwnRedis()
    own.start()
    prefix = f"sluicegate:test:outage:{uuid.uuid4().hex[:8]}:"
    config = replica_config(fake_openai, own.url, None, prefix)
    config.pop("database_url", None)
    config.pop("master_key", None)  # an open gateway: no key store needed
    config["cache"] = {}
    config["governance"] = {"redis_prefix": prefix, "redis_failure": "open"}
    processes = [GatewayProcess(config, tmp_path, f"outage-{i}") for i in range(2)]
    try:
        assert chat(processes[0].base_url, None).status_code == 200
        own.stop()
        # Redis down: requests keep flowing on both replicas (breakers local, limits fail open)
        assert [chat(p.base_url, None).status_code for p in processes] == [200, 200]
        deadline = time.monotonic() + 10
        while "using this replica's own breaker states" not in processes[1].log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "using this replica's own breaker states" in processes[1].log()  # the documented fail-open
        own.start()
        # ...and after it is back, a circuit opened on one replica reaches the other, without a restart
        deadline = time.monotonic() + 10
        while "breaker states are shared again" not in processes[1].log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "breaker states are shared again" in processes[1].log()
        fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
        assert [chat(processes[0].base_url, None, model="fragile").status_code for _ in range(2)] == [502, 502]
        deadline = time.monotonic() + 5
        while chat(processes[1].base_url, None, model="fragile").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chat(processes[1].base_url, None, model="fragile").status_code in (429, 503)
    finally:
        for process in processes:
            process.stop()
        own.stop()
