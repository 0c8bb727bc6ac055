"""Two gateway processes sharing Redis and PostgreSQL enforce one global rate limit and one budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.governance_support import MASTER, Admin, GatewayProcess, chat, chat_config, create_pg_schema, drop_pg_schema
from tests.services import database_url, redis_url

pytestmark = pytest.mark.service

#: the fake's usage (11 prompt + 7 completion tokens) at gpt-4o's $2.50 / $10 per 1M tokens
SMART_COST = (11 * 2.50 + 7 * 10.00) / 1e6


@pytest.fixture(scope="module")
def cluster(
    _fake_openai_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Started once for the module (each test uses keys and teams of its own): starting processes is slow."""
    redis, base = redis_url(), database_url()
    tmp_path = tmp_path_factory.mktemp("cluster")
    url, schema = asyncio.run(create_pg_schema(base))
    prefix = f"sluicegate:test:{uuid.uuid4().hex[:12]}:"
    config = chat_config(
        _fake_openai_server,
        database_url=url,
        redis_url=redis,
        governance={"redis_prefix": prefix, "spend_flush_interval": 0.2},
    )
    first = GatewayProcess(config, tmp_path, "first", wait=False)
    second = GatewayProcess(config, tmp_path, "second", wait=False)
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        first.stop()
        second.stop()
        asyncio.run(drop_pg_schema(base, schema))
        import redis as redis_client

        client = redis_client.Redis.from_url(redis)
        for name in client.scan_iter(prefix + "*"):
            client.delete(name)
        client.close()


async def split_burst(urls: list[str], key: str, count: int) -> list[int]:
    body = {"model": "smart", "messages": [{"role": "user", "content": "Say hello"}]}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        requests = [client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body) for i in range(count)]
        return [response.status_code for response in await asyncio.gather(*requests)]


def test_one_global_rpm_limit_across_two_processes(cluster: tuple[GatewayProcess, GatewayProcess]) -> None:
    first, second = cluster
    limit = 60
    created = Admin(first.base_url).create_key(name="fleet", rpm_limit=limit)
    codes = asyncio.run(split_burst([first.base_url, second.base_url], created["key"], 3 * limit))
    accepted = codes.count(200)
    print(f"\ntwo processes, one Redis: {accepted} of {3 * limit} accepted for a limit of {limit}")
    assert abs(accepted - limit) <= 0.02 * limit
    assert codes.count(429) == 3 * limit - accepted, sorted(set(codes))
    # every request, refused or not, has its spend record in PostgreSQL, whichever process served it
    spend = Admin(second.base_url).spend("key")
    deadline = time.monotonic() + 10
    while spend["requests"] < 3 * limit and time.monotonic() < deadline:
        time.sleep(0.1)
        spend = Admin(second.base_url).spend("key")
    assert spend["requests"] == 3 * limit
    assert spend["total_cost_usd"] == pytest.approx(accepted * SMART_COST)


def test_one_budget_across_two_processes(cluster: tuple[GatewayProcess, GatewayProcess]) -> None:
    first, second = cluster
    admin = Admin(second.base_url)
    admin.create_team(name="search", budget={"amount_usd": 0.001, "period": "daily"})
    keys = [admin.create_key(name=f"member-{i}", team="search")["key"] for i in range(2)]
    # the team's spend before request n is (n - 1) * $0.0000975: requests 1..11 start under $0.001
    codes = [
        chat(gateway.base_url, key).status_code for _ in range(7) for gateway, key in zip(cluster, keys, strict=True)
    ]
    assert codes.count(200) == 11 and codes[11:] == [429, 429, 429]
    refused = chat(first.base_url, keys[0]).json()["error"]
    assert refused["code"] == "budget_exceeded" and "team 'search'" in refused["message"]
    team = admin.request("GET", "/admin/teams/search").json()
    deadline = time.monotonic() + 10
    while team["spend"]["spent_usd"] < 11 * SMART_COST - 1e-12 and time.monotonic() < deadline:
        time.sleep(0.1)
        team = admin.request("GET", "/admin/teams/search").json()
    assert team["spend"]["spent_usd"] == pytest.approx(11 * SMART_COST)


def test_no_key_reaches_the_logs_of_either_process(cluster: tuple[GatewayProcess, GatewayProcess]) -> None:
    first, second = cluster
    key = Admin(first.base_url).create_key(name="quiet", rpm_limit=1, models=["smart"])["key"]
    for gateway in cluster:
        chat(gateway.base_url, key)
        chat(gateway.base_url, key, model="cheap")
        chat(gateway.base_url, key[:-2] + "xx")
        Admin(gateway.base_url, key).request("GET", "/admin/keys")
    logs = first.log() + second.log()
    assert "DEBUG" in logs or "INFO" in logs or "WARNING" in logs  # the processes do log at DEBUG
    for secret in (key, key[6:], MASTER):
        assert secret not in logs
