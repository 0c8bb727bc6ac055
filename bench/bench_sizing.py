"""One worker with shared state (Redis + PostgreSQL) beside one with in-process state (SQLite): req/s and
server CPU per request at 64 connections, the figure an operator plans N replicas with (docs/replicas.md).

    .venv/bin/python bench/bench_sizing.py                 6 rounds of 5 s per config (~2 min)
    .venv/bin/python bench/bench_sizing.py --rounds 10 --seconds 4

Both configs are deploy/bench/inprocess.yaml and deploy/bench/shared.yaml: master key, an alias with RPM
and TPM limits (so every request passes the governance limiter), spend and request logs written. The two
gateways take turns, one round each at a time, and the medians are compared: on a shared VM a single run
of either can be 30 % off, and alternating spreads that over both. Gateway on core 0, wrk and the fake
upstream on core 1; Redis and PostgreSQL are the machine's (SLUICEGATE_BENCH_REDIS_URL,
SLUICEGATE_BENCH_DATABASE_URL; the database `sg_bench_replicas` is created if missing).
Writes bench/results/sizing.json. Goal: shared req/s within 25 % of in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import run_wrk, write_wrk_script
from processes import Processes, free_port, pinned, tree_cpu_seconds, wait_http_ready, wait_log_line
from under_test import Package, git_revision, render_config

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONFIGS = {"in-process": ROOT / "deploy/bench/inprocess.yaml", "shared": ROOT / "deploy/bench/shared.yaml"}
API_KEY = "sk-bench-master"
GOAL = 0.75
SERVER_CORE, LOAD_CORE = 0, 1


def ensure_database() -> None:
    """CREATE DATABASE sg_bench_replicas through psql, if the server does not have it yet."""
    admin = os.environ.get("SLUICEGATE_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    exists = subprocess.run(
        ["psql", admin, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'sg_bench_replicas'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", admin, "-c", "CREATE DATABASE sg_bench_replicas"], capture_output=True, check=True)


def one_round(
    processes: Processes, package: Package, workdir: Path, name: str, upstream: int, seconds: float
) -> dict[str, Any]:
    config = workdir / f"{name}.yaml"
    config.write_text(render_config(CONFIGS[name].read_text(), upstream))
    port = free_port()
    command = [
        package.python,
        "-m",
        "sluicegate",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    child = processes.start(name, pinned(command, SERVER_CORE), env=package.env())
    try:
        wait_http_ready(child, port, "/health/readiness", 30)
        script = write_wrk_script(workdir / "post.lua", "bench", API_KEY)
        run_wrk(processes, port=port, script=script, connections=64, seconds=1, core=LOAD_CORE)  # warm-up
        before = tree_cpu_seconds(child.pid)
        outcome = run_wrk(processes, port=port, script=script, connections=64, seconds=seconds, core=LOAD_CORE)
        used = tree_cpu_seconds(child.pid) - before
    finally:
        processes.stop(child)
    if outcome.errors or outcome.requests == 0:
        raise SystemExit(f"{name}: {outcome.errors} errors of {outcome.requests} requests; see {child.log}")
    return {"rps": outcome.rps, "cpu_us_per_request": round(used * 1e6 / outcome.requests, 1), "p99_ms": outcome.p99_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    parser.add_argument("--output", type=Path, default=BENCH / "results/sizing.json")
    args = parser.parse_args()
    ensure_database()
    package = Package(args.python, ROOT / "src")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="sluicegate-sizing-") as tmp, Processes(Path(tmp)) as processes:
        workdir = Path(tmp)
        upstream_command = [args.python, str(BENCH / "fake_upstream.py"), "--port", "0"]
        upstream_child = processes.start("fake-upstream", pinned(upstream_command, LOAD_CORE))
        upstream = int(wait_log_line(upstream_child, "READY ", 30))
        for index in range(args.rounds):
            for name in CONFIGS:
                point = one_round(processes, package, workdir, name, upstream, args.seconds)
                rounds[name].append(point)
                print(
                    f"round {index + 1} {name:<10} {point['rps']:>8.0f} req/s"
                    f" {point['cpu_us_per_request']:>7.1f} µs/req",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(0.5)
    summary = {
        name: {
            "rps_median": round(statistics.median(p["rps"] for p in points), 1),
            "cpu_us_per_request_median": round(statistics.median(p["cpu_us_per_request"] for p in points), 1),
            "rounds": points,
        }
        for name, points in rounds.items()
    }
    ratio = summary["shared"]["rps_median"] / summary["in-process"]["rps_median"]
    result = {
        "git": git_revision(ROOT / "src"),
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio >= GOAL,
        **summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("| one worker, 64 connections | req/s (median) | server CPU µs/request (median) |")
    print("|---|---|---|")
    for name in CONFIGS:
        print(f"| {name} | {summary[name]['rps_median']:,.0f} | {summary[name]['cpu_us_per_request_median']:.0f} |")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(
        f"\nshared / in-process req/s = {ratio:.2f} (goal >= {GOAL}: {verdict});"
        f" {args.rounds} rounds of {args.seconds:g} s"
    )


if __name__ == "__main__":
    main()
