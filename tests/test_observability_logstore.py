"""The request log store: SQLite by default, PostgreSQL when configured; rollups, retention, bounded writes.

Scale is proven by bench/bench_logstore.py (5 million rows); here every dashboard query's plan is checked
to go through an index, so its cost does not grow with the table.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.context import AttemptRecord, RequestRecord
from sluicegate.observability.config import LogStoreConfig
from sluicegate.observability.logstore import LogStore, RequestFilter, resolve_url
from sluicegate.observability.logstore import schema as tables
from sluicegate.providers.base import Usage
from tests.fakes.server import Fault
from tests.services import database_url

MESSAGES = [{"role": "user", "content": "Say hello"}]
NOW = 1_800_000_000.0


def gateway_config(fake: Any, url: str, **store: Any) -> dict[str, Any]:
    return {
        "master_key": "sk-master",
        "database_url": url,
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [
            {
                "name": "smart",
                "deployments": [{"provider": "oai", "model": "gpt-4o"}],
                "routing": {"retries": 1, "backoff": 0},
            }
        ],
        "observability": {"log_store": {"flush_interval": 0.05, **store}},
    }


def records(count: int, start: float = NOW, step: float = 1.0) -> list[RequestRecord]:
    made = []
    for i in range(count):
        failed = i % 10 == 0
        made.append(
            RequestRecord(
                request_id=f"req-{i}",
                alias="smart" if i % 2 else "cheap",
                key_id=f"key-{i % 3}",
                deployment="oai/gpt-4o" if i % 2 else "ant/claude",
                provider="oai" if i % 2 else "ant",
                status=502 if failed else 200,
                error_code="upstream_502" if failed else None,
                usage=None if failed else Usage(100, 20, 120),
                cost_usd=None if failed else 0.002,
                cache="hit" if i % 4 == 1 else "miss",
                latency_ms=50.0 + i,
                ttft_ms=20.0 if i % 5 == 0 else None,
                attempts=[AttemptRecord("oai/gpt-4o", 500), AttemptRecord("oai/gpt-4o", 200)] if i % 7 == 0 else [],
                started_at=start + i * step,
            )
        )
    return made


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[LogStore]:
    store = LogStore(f"sqlite:///{tmp_path}/logs.db", LogStoreConfig(enabled=True))
    await store.start()
    yield store
    await store.aclose()


async def check_roundtrip(store: LogStore) -> None:
    made = records(200)
    for record in made:
        store.emit(record)
    await store.flush()
    newest = await store.recent(RequestFilter(limit=5))
    assert [r["request_id"] for r in newest] == ["req-199", "req-198", "req-197", "req-196", "req-195"]
    errors = await store.recent(RequestFilter(errors_only=True, limit=100))
    assert len(errors) == 20 and all(r["status"] == 502 for r in errors)
    by_key = await store.recent(RequestFilter(key_id="key-1", alias="smart", limit=500))
    assert {r["key_id"] for r in by_key} == {"key-1"} and len(by_key) == 34  # i % 6 == 1
    window = await store.recent(RequestFilter(since=NOW + 10, until=NOW + 20, limit=100))
    assert [r["request_id"] for r in window] == [f"req-{i}" for i in range(19, 9, -1)]
    found = await store.get("req-7")
    assert found is not None and [a["status"] for a in found["attempts"]] == [500, 200]

    # the rollups add up to exactly what the rows say
    series = await store.series(3600, "alias", now=NOW + 200)
    summary = series["summary"]
    assert summary["requests"] == 200 and summary["errors"] == 20
    assert summary["input_tokens"] == 180 * 100 and summary["output_tokens"] == 180 * 20
    assert summary["cost_usd"] == pytest.approx(180 * 0.002)
    assert summary["cache_hit_rate"] == pytest.approx(50 / 200)
    assert summary["retries"] == len([i for i in range(200) if i % 7 == 0])
    assert 50 <= summary["p50_ms"] <= 200 and summary["p99_ms"] >= summary["p50_ms"]
    assert {g["name"] for g in series["groups"]} == {"smart", "cheap"}
    assert sum(sum(g["requests"]) for g in series["groups"]) == 200
    per_key = {row["name"]: row["requests"] for row in await store.totals_by("key", 3600, now=NOW + 200)}
    assert per_key == {"key-0": 67, "key-1": 67, "key-2": 66}
    health = await store.attempt_health(3600, now=NOW + 200)
    assert health["oai/gpt-4o"] == {"attempts": 58, "failures": 29}

    # a day later the same rows are read from the hourly rollups, and per key from the daily ones plus the
    # hours at either end of the range
    week = await store.series(7 * 86400, None, now=NOW + 86400)
    assert week["summary"]["requests"] == 200 and week["step"] % 3600 == 0
    for now in (NOW + 86400, NOW + 3 * 86400 + 5000):
        weekly = {row["name"]: row["requests"] for row in await store.totals_by("key", 7 * 86400, now=now)}
        assert weekly == {"key-0": 67, "key-1": 67, "key-2": 66}
    by_key = await store.series(30 * 86400, "key", now=NOW + 86400)
    assert {g["name"] for g in by_key["groups"]} == {"key-0", "key-1", "key-2"}
    assert sum(sum(g["requests"]) for g in by_key["groups"]) == 200


async def test_sqlite_roundtrip_rollups_and_filters(sqlite_store: LogStore) -> None:
    await check_roundtrip(sqlite_store)


async def test_retention_deletes_old_rows_and_rollups(sqlite_store: LogStore) -> None:
    for record in records(50, start=NOW - 40 * 86400) + records(10, start=NOW):
        sqlite_store.emit(record)
    await sqlite_store.flush()
    deleted = await sqlite_store.apply_retention(now=NOW + 100)
    assert deleted == 50
    remaining = await sqlite_store.recent(RequestFilter(limit=100))
    assert len(remaining) == 10
    # minute rollups go after 8 days; hourly ones keep the long charts for rollup_retention_days (400)
    day = await sqlite_store.series(86400, None, now=NOW - 40 * 86400 + 100)
    assert day["summary"]["requests"] == 0
    month = await sqlite_store.series(30 * 86400, None, now=NOW - 39 * 86400)
    assert month["summary"]["requests"] == 50
    await sqlite_store.apply_retention(now=NOW + 401 * 86400)
    month = await sqlite_store.series(30 * 86400, None, now=NOW - 39 * 86400)
    assert month["summary"]["requests"] == 0


async def test_every_dashboard_query_is_served_by_an_index(sqlite_store: LogStore, tmp_path: Path) -> None:
    for record in records(50):
        sqlite_store.emit(record)
    await sqlite_store.flush()
    issued: list[tuple[str, list[Any]]] = []
    fetch = sqlite_store.backend.fetch

    async def spy(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        issued.append((sql, list(params)))
        return await fetch(sql, params)

    sqlite_store.backend.fetch = spy  # type: ignore[method-assign]
    await sqlite_store.recent(RequestFilter())
    await sqlite_store.recent(RequestFilter(alias="smart", errors_only=True))
    await sqlite_store.recent(RequestFilter(key_id="key-1", until=NOW + 10))
    await sqlite_store.recent(RequestFilter(deployment="oai/gpt-4o", since=NOW))
    await sqlite_store.recent(RequestFilter(errors_only=True))
    await sqlite_store.get("req-3")
    for group in (None, "alias", "provider", "deployment", "key"):
        await sqlite_store.series(86400, group, now=NOW)
        await sqlite_store.series(30 * 86400, group, now=NOW)
    await sqlite_store.totals_by("key", 3600, now=NOW)
    await sqlite_store.attempt_health(900, now=NOW)
    conn = sqlite3.connect(tmp_path / "logs.db")
    for sql, params in issued:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        if tables.LOGS in sql:
            assert "USING INDEX" in plan or "USING INTEGER PRIMARY KEY" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)
        else:  # rollups: a range of the primary key, which starts with the bucket
            assert "SEARCH" in plan and "bucket>" in plan, (sql, plan)
    conn.close()


async def test_a_database_that_is_down_costs_bounded_memory_and_counts_drops() -> None:
    store = LogStore(
        "postgresql://nobody@127.0.0.1:1/none",
        LogStoreConfig(enabled=True, max_queue=100, flush_interval=0.01, batch_size=10),
    )
    await store.start()
    for record in records(1000):
        store.emit(record)
    await asyncio.sleep(0.1)  # let the writer fail a few times
    assert len(store.queue) <= 100
    assert store.queue.dropped >= 900
    assert store.queue.written == 0
    await store.aclose()


async def test_a_stalled_database_never_blocks_emit(tmp_path: Path) -> None:
    store = LogStore(
        f"sqlite:///{tmp_path}/slow.db",
        LogStoreConfig(enabled=True, max_queue=300, batch_size=100, flush_interval=0.01),
    )
    gate = asyncio.Event()
    write = store.backend.write

    async def stalled(batch: Any) -> None:
        await gate.wait()
        await write(batch)

    store.backend.write = stalled  # type: ignore[method-assign]
    await store.start()
    await asyncio.sleep(0.05)
    for record in records(1000):
        store.emit(record)  # a plain append: no await, no I/O, whatever the writer is doing
    assert len(store.queue) == 300 and store.queue.dropped == 700
    gate.set()
    await store.flush()
    kept = await store.recent(RequestFilter(limit=1000))
    assert len(kept) == 300 and kept[0]["request_id"] == "req-999" and kept[-1]["request_id"] == "req-700"
    await store.aclose()


def test_requests_are_logged_through_the_gateway_and_readable_by_the_admin_api(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw = gateway_factory(gateway_config(fake_openai, f"sqlite:///{tmp_path}/gw.db"))
    client = gw.openai(api_key="sk-master")
    fake_openai.faults.append(Fault(status=500))
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    headers = {"authorization": "Bearer sk-master"}
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        response = httpx.get(gw.url("/admin/logs"), params={"request_id": request_id}, headers=headers)
        assert response.status_code == 200
        found = response.json()["data"]
        time.sleep(0.05)
    assert found, "the request never reached the log store"
    [entry] = found
    assert entry["alias"] == "smart" and entry["status"] == 200 and entry["prompt_tokens"] == 11
    assert [a["status"] for a in entry["attempts"]] == [500, 200]
    listing = httpx.get(gw.url("/admin/logs"), params={"alias": "smart", "limit": 5}, headers=headers).json()
    assert listing["object"] == "list" and listing["data"][0]["request_id"] == request_id
    assert httpx.get(gw.url("/admin/logs")).status_code == 401
    bad = httpx.get(gw.url("/admin/logs"), params={"since": "soon"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_requests_succeed_while_the_log_database_is_down(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    # keys and spend live in a working database; only the log store's database is down
    down = "postgresql://nobody@127.0.0.1:1/none"
    gw = gateway_factory(
        gateway_config(fake_openai, f"sqlite:///{tmp_path}/keys.db", database_url=down, max_queue=5, batch_size=2)
    )
    client = gw.openai(api_key="sk-master")
    for _ in range(12):
        assert client.chat.completions.create(model="smart", messages=MESSAGES).choices
    text = httpx.get(gw.url("/metrics")).text
    dropped = [
        line
        for line in text.splitlines()
        if line.startswith('sluicegate_observability_dropped_total{sink="log-store"}')
    ]
    assert dropped and float(dropped[0].split()[-1]) >= 12 - 5 - 2


def test_the_log_store_is_off_unless_a_database_is_configured() -> None:
    assert resolve_url(LogStoreConfig(), None) is None
    assert resolve_url(LogStoreConfig(), "postgresql://db/x") == "postgresql://db/x"
    assert resolve_url(LogStoreConfig(enabled=True), None) == "sqlite:///sluicegate.db"
    assert resolve_url(LogStoreConfig(enabled=False), "sqlite:///x.db") is None
    assert resolve_url(LogStoreConfig(database_url="sqlite:///logs.db"), "postgresql://db/x") == "sqlite:///logs.db"


@pytest.mark.service
async def test_postgresql_roundtrip_rollups_and_retention() -> None:
    import asyncpg  # type: ignore[import-untyped]

    schema_name = f"sg_obs_test_{uuid.uuid4().hex[:10]}"
    base = database_url()
    url = f"{base}{'&' if '?' in base else '?'}search_path={schema_name}"
    store = LogStore(url, LogStoreConfig(enabled=True))
    await store.start()
    try:
        await check_roundtrip(store)
        assert await store.apply_retention(now=NOW + 31 * 86400) == 200
        assert await store.recent(RequestFilter()) == []
    finally:
        await store.aclose()
        conn = await asyncpg.connect(base)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        await conn.close()
