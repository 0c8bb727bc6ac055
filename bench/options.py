"""The command line: every option, its default, and the Settings a run follows."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from under_test import REPO, Package

VENV_PYTHON = REPO / ".venv" / "bin" / "python"
RESULTS = REPO / "bench" / "results" / "latest.json"
PARTS = ("throughput", "ttfb", "sse", "memory", "import", "soak")
DEFAULT_PARTS = ("throughput", "ttfb", "sse", "memory", "import")
TARGETS = ("direct", "passthrough", "gateway")
DEFAULT_CONFIG = """\
providers:
  up: {type: openai, base_url: {upstream}, api_key: bench-key}
models:
  - name: bench
    deployments:
      - {provider: up, model: bench-model}
"""


@dataclass
class Settings:
    targets: list[str]
    parts: list[str]
    duration: float
    warmup: float
    connections: list[int]
    ttfb_samples: int
    sse_streams: int
    sse_rounds: int
    sse_ramp: float
    sse_chunks: int
    sse_pace_ms: float
    soak_checkpoints: list[int]
    soak_timeout: float
    model: str
    api_key: str | None
    config_template: str
    server: str | None
    python: str
    src: Path
    server_core: int | None
    load_core: int | None
    startup_timeout: float
    wait_quiet: float
    output: Path
    strict: bool
    notes: list[str] = field(default_factory=list)


def _csv(kind: Callable[[str], Any], allowed: tuple[str, ...] | None = None) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        values = [kind(item.strip()) for item in text.split(",") if item.strip()]
        if allowed is not None and (unknown := [value for value in values if value not in allowed]):
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)} (expected some of {', '.join(allowed)})")
        return values

    return parse


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--target", action="append", choices=TARGETS, help="repeatable; default all; direct always runs")
    add("--parts", type=_csv(str, PARTS), default=list(DEFAULT_PARTS), help=f"comma list of {', '.join(PARTS)}")
    add("--soak", action="store_true", help="add the soak part (not run by default)")
    add("--quick", action="store_true", help="3 s per wrk point, 1 s warm-up, 1000 TTFB samples")
    add("--duration", type=float, help="seconds per wrk point (default 10, quick 3)")
    add("--warmup", type=float, help="seconds of wrk warm-up per target (default 2, quick 1)")
    add("--connections", type=_csv(int), default=[1, 16, 64], help="comma list (default 1,16,64)")
    add("--ttfb-samples", type=int, help="sequential streamed requests (default 1500, quick 1000)")
    add("--sse-streams", type=int, default=500)
    add("--sse-rounds", type=int, help="bursts per target; the median one is reported (default 3, quick 1)")
    add("--sse-ramp", type=float, default=0.5, help="seconds over which the streams are opened")
    add("--sse-chunks", type=int, default=50)
    add("--sse-pace-ms", type=float, default=20.0)
    add("--soak-requests", type=_csv(int), default=[100_000, 1_000_000], help="RSS checkpoints")
    add("--soak-timeout", type=float, default=1800.0, help="seconds the soak may take at most")
    add("--model", default="bench", help="the model alias the requests ask for")
    add("--api-key", help="sent as a bearer token (for configs with a master_key)")
    add("--config", type=Path, help="gateway config template; {upstream} = the fake's base URL (…/v1)")
    add("--server", help="passed as `sluicegate serve --server X` (omitted by default)")
    add("--python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable))
    add("--src", type=Path, default=REPO / "src", help="the sluicegate source tree to bench (default: src/)")
    add("--server-core", type=int, default=0)
    add("--load-core", type=int, default=1)
    add("--no-pin", action="store_true", help="do not pin processes to cores")
    add("--startup-timeout", type=float, default=60.0)
    add("--wait-quiet", type=float, default=0.0, help="before each target, wait up to this long for a quiet CPU")
    add("--output", type=Path, default=RESULTS)
    add("--strict", action="store_true", help="exit 1 when a target misses one of its goals")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    notes: list[str] = []
    targets = ["direct", *[name for name in TARGETS[1:] if name in (args.target or TARGETS)]]
    parts = list(dict.fromkeys([*args.parts, *(["soak"] if args.soak else [])]))
    if "gateway" in targets and (why := Package(args.python, args.src).server_problem(args.server)) is not None:
        targets.remove("gateway")
        notes.append(f"gateway not benched: {why}")
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if not pin:
        notes.append("processes not pinned (--no-pin, fewer than 2 CPUs, or no taskset)")
    return Settings(
        targets=targets,
        parts=parts,
        duration=args.duration or (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        connections=args.connections,
        ttfb_samples=args.ttfb_samples or (1000 if args.quick else 1500),
        sse_streams=args.sse_streams,
        sse_rounds=args.sse_rounds or (1 if args.quick else 3),
        sse_ramp=args.sse_ramp,
        sse_chunks=args.sse_chunks,
        sse_pace_ms=args.sse_pace_ms,
        soak_checkpoints=sorted(args.soak_requests),
        soak_timeout=args.soak_timeout,
        model=args.model,
        api_key=args.api_key,
        config_template=args.config.read_text() if args.config else DEFAULT_CONFIG,
        server=args.server,
        python=args.python,
        src=args.src,
        server_core=args.server_core if pin else None,
        load_core=args.load_core if pin else None,
        startup_timeout=args.startup_timeout,
        wait_quiet=args.wait_quiet,
        output=args.output,
        strict=args.strict,
        notes=notes,
    )
