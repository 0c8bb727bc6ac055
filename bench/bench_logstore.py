"""How fast the request log store answers the dashboard and the admin API with millions of logged requests.

Bulk-loads synthetic requests through the store's own write path (`LogStore.batch` + the backend's
`write`: the same rows and rollup upserts the background writer produces), then times every query the
dashboard and `GET /admin/logs` make, on SQLite and/or PostgreSQL.

    .venv/bin/python bench/bench_logstore.py                       # 5M rows, SQLite and PostgreSQL
    .venv/bin/python bench/bench_logstore.py --rows 200000 --backend sqlite
    .venv/bin/python bench/bench_logstore.py --backend postgresql --database-url postgresql://postgres@127.0.0.1/test

SQLite goes to a temporary file (removed afterwards unless --keep); PostgreSQL to a schema of its own
(`sluicegate_bench`, dropped afterwards unless --keep). Results: a Markdown table on stdout and JSON in
bench/results/logstore.json. The goal is every query under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sluicegate.context import AttemptRecord, RequestRecord
from sluicegate.observability.config import LogStoreConfig
from sluicegate.observability.logstore import RANGES, LogStore, RequestFilter
from sluicegate.providers.base import Usage

RESULTS = Path(__file__).resolve().parent / "results" / "logstore.json"
GOAL_MS = 300.0
BATCH = 5000
ALIASES = {
    "smart": ["openai/gpt-4o", "anthropic/claude-sonnet"],
    "fast": ["openai/gpt-4o-mini", "groq/llama-3.1-8b"],
    "cheap": ["gemini/gemini-flash", "openai/gpt-4o-mini"],
    "code": ["anthropic/claude-sonnet", "openai/gpt-4o"],
    "embed": ["openai/text-embedding-3-small"],
    "vision": ["openai/gpt-4o", "gemini/gemini-pro"],
    "long": ["anthropic/claude-sonnet", "gemini/gemini-pro"],
    "batch": ["openai/gpt-4o-mini"],
}


def synthetic(count: int, start: float, end: float, keys: int, seed: int) -> list[list[RequestRecord]]:
    """Requests spread evenly over [start, end), in time order, in batches; keys follow a Zipf-like law."""
    rng = random.Random(seed)
    key_ids = [f"key_{i:05d}" for i in range(keys)]
    key_weights = [1 / (i + 1) for i in range(keys)]
    aliases = list(ALIASES)
    alias_weights = [8, 6, 5, 4, 3, 2, 1, 1]
    step = (end - start) / count
    batches: list[list[RequestRecord]] = []
    batch: list[RequestRecord] = []
    chosen_keys = rng.choices(key_ids, key_weights, k=count)
    chosen_aliases = rng.choices(aliases, alias_weights, k=count)
    for i in range(count):
        alias = chosen_aliases[i]
        deployments = ALIASES[alias]
        failed = rng.random() < 0.03
        fell_back = not failed and len(deployments) > 1 and rng.random() < 0.02
        deployment = deployments[1] if fell_back else deployments[0]
        attempts = [AttemptRecord(deployments[0], 503, "upstream_503", 900.0)] if fell_back else []
        attempts.append(AttemptRecord(deployment, 502 if failed else 200, "upstream_502" if failed else None))
        latency = rng.lognormvariate(6.3, 0.8)
        prompt, completion = rng.randint(20, 4000), rng.randint(1, 800)
        stream = rng.random() < 0.5
        batch.append(
            RequestRecord(
                request_id=f"{seed:04x}{i:016x}",
                alias=alias,
                stream=stream,
                key_id=chosen_keys[i],
                deployment=deployment,
                provider=deployment.partition("/")[0],
                attempts=attempts,
                status=502 if failed else 200,
                error_code="upstream_502" if failed else None,
                usage=None if failed else Usage(prompt, completion, prompt + completion),
                cost_usd=None if failed else (prompt * 2.5 + completion * 10) / 1e6,
                cache="hit" if rng.random() < 0.15 else "miss",
                started_at=start + i * step,
                latency_ms=latency,
                ttft_ms=latency * 0.3 if stream else None,
            )
        )
        if len(batch) == BATCH:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


async def load(store: LogStore, rows: int, days: float, keys: int, now: float) -> float:
    started = time.perf_counter()
    start = now - days * 86400
    span = now - start
    chunk = 250_000  # generate a slice at a time to keep memory flat
    written = 0
    for part in range(math.ceil(rows / chunk)):
        size = min(chunk, rows - written)
        first = start + span * written / rows
        last = start + span * (written + size) / rows
        for batch in synthetic(size, first, last, keys, seed=part):
            await store.backend.write(store.batch(batch))
        written += size
        rate = written / (time.perf_counter() - started)
        print(f"  loaded {written:>9,} rows ({rate:,.0f} rows/s)", file=sys.stderr)
    return time.perf_counter() - started


def queries(store: LogStore, now: float, sample_id: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every read the dashboard's pages and `GET /admin/logs` make."""
    named: dict[str, Callable[[], Awaitable[Any]]] = {}
    for name, seconds in RANGES.items():
        for group in ("alias", "provider", "deployment", "key"):
            named[f"overview {name} by {group}"] = lambda s=seconds, g=group: store.series(s, g, now=now)
        named[f"keys usage {name}"] = lambda s=seconds: store.totals_by("key", s, now=now)
    named["deployments (15m totals)"] = lambda: store.totals_by("deployment", 900, now=now)
    named["deployments (15m attempts)"] = lambda: store.attempt_health(900, now=now)
    named["recent requests"] = lambda: store.recent(RequestFilter(limit=50))
    named["recent by alias"] = lambda: store.recent(RequestFilter(alias="vision", limit=50))
    named["recent by key (rare key)"] = lambda: store.recent(RequestFilter(key_id="key_00499", limit=50))
    named["recent errors"] = lambda: store.recent(RequestFilter(errors_only=True, limit=50))
    named["recent errors by alias"] = lambda: store.recent(RequestFilter(alias="smart", errors_only=True, limit=50))
    named["recent by deployment"] = lambda: store.recent(RequestFilter(deployment="groq/llama-3.1-8b", limit=50))
    named["admin logs: a day 3 days ago"] = lambda: store.recent(
        RequestFilter(since=now - 4 * 86400, until=now - 3 * 86400, limit=100)
    )
    named["admin logs: key + window"] = lambda: store.recent(
        RequestFilter(key_id="key_00003", since=now - 5 * 86400, until=now - 86400, limit=100)
    )
    named["admin logs: by request id"] = lambda: store.get(sample_id)
    return named


async def measure(store: LogStore, now: float, sample_id: str, repeats: int) -> list[dict[str, Any]]:
    results = []
    for name, run in queries(store, now, sample_id).items():
        times = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            answer = await run()
            times.append((time.perf_counter() - started) * 1000)
        assert answer is not None
        warm = times[1:]
        results.append(
            {
                "query": name,
                "first_ms": round(times[0], 1),
                "median_ms": round(statistics.median(warm), 1),
                "max_ms": round(max(warm), 1),
            }
        )
    return results


async def rows_in(store: LogStore) -> dict[str, int]:
    from sluicegate.observability.logstore import schema

    counts = {}
    for table in (schema.LOGS, *(r.table for r in schema.ROLLUPS)):
        counts[table] = int((await store.backend.fetch(f"SELECT COUNT(*) FROM {table}"))[0][0])
    return counts


async def bench_backend(url: str, args: argparse.Namespace, cleanup: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    store = LogStore(url, LogStoreConfig(enabled=True))
    await store._ensure_open()
    now = time.time()
    try:
        print(f"{store.backend.dialect}: loading {args.rows:,} rows over {args.days:g} days", file=sys.stderr)
        load_s = await load(store, args.rows, args.days, args.keys, now)
        # fresh statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) keep them in production
        await store.backend.execute("ANALYZE")
        sample = (await store.recent(RequestFilter(since=now - 2 * 86400, limit=1)))[0]["request_id"]
        results = await measure(store, now, sample, args.repeats)
        counts = await rows_in(store)
    finally:
        await store.backend.close()
        store._opened = False
        if not args.keep:
            await cleanup()
    worst = max(r["max_ms"] for r in results)
    return {
        "backend": store.backend.dialect,
        "rows": args.rows,
        "days": args.days,
        "keys": args.keys,
        "load_seconds": round(load_s, 1),
        "table_rows": counts,
        "queries": results,
        "worst_ms": worst,
        "goal_ms": GOAL_MS,
        "met": worst < GOAL_MS,
    }


async def run_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-bench-"))
    path = folder / "logs.db"

    async def cleanup() -> None:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()

    result = await bench_backend(f"sqlite:///{path}", args, cleanup)
    result["file"] = str(path) if args.keep else None
    return result


async def run_postgresql(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]

    schema_name = "sluicegate_bench"
    base = args.database_url
    admin = await asyncpg.connect(base)
    await admin.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
    await admin.close()

    async def cleanup() -> None:
        conn = await asyncpg.connect(base)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
        await conn.close()

    separator = "&" if "?" in base else "?"
    return await bench_backend(f"{base}{separator}search_path={schema_name}", args, cleanup)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"### {result['backend']}: {result['rows']:,} requests over {result['days']:g} days, {result['keys']} keys "
        f"(loaded in {result['load_seconds']} s)",
        "",
        "| query | first (ms) | median (ms) | max (ms) |",
        "|---|---:|---:|---:|",
    ]
    for row in result["queries"]:
        lines.append(f"| {row['query']} | {row['first_ms']} | {row['median_ms']} | {row['max_ms']} |")
    verdict = "met" if result["met"] else "MISSED"
    lines += ["", f"Slowest warm query: {result['worst_ms']} ms (goal < {GOAL_MS:.0f} ms: {verdict})", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="the requests are spread over this many days")
    parser.add_argument("--keys", type=int, default=500, help="distinct virtual keys (Zipf-distributed)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SLUICEGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--repeats", type=int, default=5, help="warm runs per query")
    parser.add_argument("--keep", action="store_true", help="keep the loaded data")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    if args.backend in ("sqlite", "both"):
        results.append(asyncio.run(run_sqlite(args)))
    if args.backend in ("postgresql", "both"):
        results.append(asyncio.run(run_postgresql(args)))
    for result in results:
        print(table(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    args.output.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
