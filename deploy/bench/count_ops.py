"""Redis and PostgreSQL operations per request of one gateway in replica mode (docs/replicas.md, "Sizing").

    .venv/bin/python deploy/bench/count_ops.py [--requests 3000] [--concurrency 16]

Starts its own redis-server on a free port (so no other client's commands are counted), bench's fake
upstream and one gateway with deploy/bench/shared.yaml, sends the requests, and prints the deltas of
Redis `INFO commandstats` and of `pg_stat_database` for the PostgreSQL database `sg_bench_replicas`
(created if missing; SLUICEGATE_BENCH_PG_ADMIN_URL is the server's admin URL, default
postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "sg_bench_replicas"
READS = "(socket reads)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    # Socket reads: how many round trips the commands came in (the limiter pipelines its scripts).
    counts[READS] = int(client.info("stats")["total_reads_processed"])
    return counts


async def pg_stats(admin_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(admin_url)
    try:
        row = await connection.fetchrow(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched "
            "FROM pg_stat_database WHERE datname = $1",
            DATABASE,
        )
        await connection.execute("SELECT pg_stat_clear_snapshot()")
    finally:
        await connection.close()
    return dict(row) if row else {}


async def ensure_database(admin_url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await connection.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await connection.close()


async def load(url: str, requests: int, concurrency: int) -> int:
    body = {"model": "bench", "messages": [{"role": "user", "content": "Say hello"}]}
    headers = {"Authorization": "Bearer sk-bench-master"}
    answered = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        queue = iter(range(requests))

        async def worker() -> None:
            nonlocal answered
            for _ in queue:
                response = await client.post("/v1/chat/completions", json=body)
                answered += response.status_code == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("gateway did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    admin_url = os.environ.get("SLUICEGATE_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(ensure_database(admin_url))
    redis_port, gateway_port = free_port(), free_port()
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(
            subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
        )
        upstream = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", "0"], stdout=subprocess.PIPE
        )
        children.append(upstream)
        assert upstream.stdout is not None
        upstream_port = upstream.stdout.readline().decode().split()[1]
        template = (ROOT / "deploy" / "bench" / "shared.yaml").read_text()
        config = Path(tempfile.mkdtemp()) / "shared.yaml"
        config.write_text(template.replace("{upstream}", f"http://127.0.0.1:{upstream_port}/v1"))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "SLUICEGATE_BENCH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SLUICEGATE_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "sluicegate", "serve", "--config", str(config), "--port", str(gateway_port)]
        children.append(subprocess.Popen(command, env=env, cwd=config.parent))
        url = f"http://127.0.0.1:{gateway_port}"
        wait_ready(url)
        client = redis.Redis(port=redis_port)
        asyncio.run(load(url, 200, args.concurrency))  # warm-up: connections, scripts, tables
        time.sleep(2.5)  # let the warm-up's batches be written
        redis_before, pg_before = commandstats(client), asyncio.run(pg_stats(admin_url))
        started = time.monotonic()
        answered = asyncio.run(load(url, args.requests, args.concurrency))
        elapsed = time.monotonic() - started
        time.sleep(2.5)  # the spend and log batches of the measured requests
        redis_after, pg_after = commandstats(client), asyncio.run(pg_stats(admin_url))
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(40)
    redis_before["info"] = redis_after.get("info", 0)  # our own INFO calls
    print(f"{answered} of {args.requests} answered 200 in {elapsed:.1f}s ({args.concurrency} concurrent)")
    total = 0
    for name in sorted(redis_after):
        calls = redis_after[name] - redis_before.get(name, 0)
        if calls and name not in ("info", READS):
            total += calls
            print(f"redis {name:<12} {calls:>8}  {calls / args.requests:.3f}/request")
    print(f"redis total        {total:>8}  {total / args.requests:.3f}/request")
    reads = redis_after[READS] - redis_before[READS] - 2  # minus the after-snapshot's own two INFO reads
    print(f"redis round trips  {reads:>8}  {reads / args.requests:.3f}/request (socket reads)")
    for name in ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_fetched"):
        delta = pg_after.get(name, 0) - pg_before.get(name, 0)
        print(f"postgres {name:<13} {delta:>8}  {delta / args.requests:.3f}/request")


if __name__ == "__main__":
    main()
