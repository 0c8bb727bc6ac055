"""Turn raw bench results into overheads, goal checks and Markdown tables.

The goals are the ones in bench/README.md; a goal whose inputs were not measured is reported as "n/a".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]
CHECKPOINT_SLACK = 0.995
NOISY_CORES = 0.1


@dataclass(frozen=True)
class Goal:
    name: str
    unit: str
    limit: float
    #: True: the value must be >= limit; False: <= limit
    at_least: bool

    def check(self, value: float | None) -> dict[str, Any]:
        ok = None if value is None else (value >= self.limit if self.at_least else value <= self.limit)
        relation = ">=" if self.at_least else "<="
        return {"goal": self.name, "value": value, "limit": f"{relation} {self.limit:g} {self.unit}", "ok": ok}


THROUGHPUT_64 = Goal("throughput at 64 conns", "req/s", 4000, at_least=True)
ADDED_P50 = Goal("added p50 latency at 1 conn", "ms", 0.5, at_least=False)
ADDED_TTFB = Goal("added TTFB p50", "ms", 1.0, at_least=False)
IDLE_RSS = Goal("idle RSS", "MB", 80, at_least=False)
SSE_COMPLETE = Goal("SSE streams completed (of >= 500)", "%", 100, at_least=True)
SSE_GAP = Goal("SSE p99 max-gap above direct", "ms", 30, at_least=False)
SOAK_GROWTH = Goal("soak RSS growth", "%", 10, at_least=False)
IMPORT = Goal("import sluicegate", "ms", 300, at_least=False)


# --- lookups -----------------------------------------------------------------------------------


def _point(target: Results, connections: int) -> Results | None:
    return next((p for p in target.get("throughput", []) if p["connections"] == connections), None)


def dig(document: Results | None, *keys: str) -> Any:
    """document[k1][k2]..., or None where a level is missing."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _per_second(microseconds: float | None) -> float | None:
    return None if not microseconds else round(1e6 / microseconds)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


# --- evaluation --------------------------------------------------------------------------------


def overhead(target: Results, direct: Results) -> Results:
    top = max((p["connections"] for p in direct.get("throughput", [])), default=64)
    return {
        "added_p50_ms_1conn": _minus(dig(_point(target, 1), "p50_ms"), dig(_point(direct, 1), "p50_ms")),
        f"throughput_ratio_{top}conn": _ratio(dig(_point(target, top), "rps"), dig(_point(direct, top), "rps")),
        "added_ttfb_p50_ms": _minus(dig(target, "ttfb", "ttfb_ms", "p50"), dig(direct, "ttfb", "ttfb_ms", "p50")),
        # What one core could serve if the server's CPU per request were the only limit: robust to noise.
        f"cpu_bound_rps_{top}conn": _per_second(dig(_point(target, top), "server_cpu_us_per_request")),
        "sse_gap_p99_over_direct_ms": _minus(
            dig(target, "sse", "max_gap_ms", "p99"), dig(direct, "sse", "max_gap_ms", "p99")
        ),
    }


def _sse_completed_percent(target: Results) -> float | None:
    streams, completed = dig(target, "sse", "streams"), dig(target, "sse", "completed")
    if not streams or completed is None:
        return None
    if streams < 500:
        return 0.0  # fewer than 500 streams cannot meet the goal, whatever completed
    return round(100.0 * float(completed) / float(streams), 2)


def checks(name: str, target: Results, added: Results, imported: Results | None) -> list[Results]:
    rows = [
        THROUGHPUT_64.check(dig(_point(target, 64), "rps")),
        ADDED_P50.check(added["added_p50_ms_1conn"]),
        ADDED_TTFB.check(added["added_ttfb_p50_ms"]),
        IDLE_RSS.check(dig(target, "memory", "idle", "rss_mb")),
        SSE_COMPLETE.check(_sse_completed_percent(target)),
        SSE_GAP.check(added["sse_gap_p99_over_direct_ms"]),
    ]
    if "soak" in target:
        rows.append(SOAK_GROWTH.check(target["soak"].get("growth_percent")))
    if name == "gateway" and imported is not None:
        rows.append(IMPORT.check(imported.get("import_ms")))
    return rows


def evaluate(results: Results) -> tuple[Results, Results]:
    direct = results["targets"].get("direct", {})
    overheads, all_checks = {}, {}
    for name, target in results["targets"].items():
        if name == "direct" or "error" in target:
            continue
        overheads[name] = overhead(target, direct)
        all_checks[name] = checks(name, target, overheads[name], results.get("import"))
    return overheads, all_checks


def any_failed(results: Results) -> bool:
    return any(row["ok"] is False for rows in results.get("checks", {}).values() for row in rows)


def soak_summary(samples: list[Results], checkpoints: list[int], errors: int, timed_out: bool) -> Results:
    """RSS at the first sample past each checkpoint; growth between the first and the last checkpoint."""
    at: dict[str, float | None] = {}
    for checkpoint in checkpoints:
        sample = next((s for s in samples if s["requests"] >= checkpoint * CHECKPOINT_SLACK), None)
        at[str(checkpoint)] = None if sample is None else sample["rss_mb"]
    first, last = at.get(str(checkpoints[0])), at.get(str(checkpoints[-1]))
    growth = None if first is None or last is None or len(checkpoints) < 2 else round(100 * (last - first) / first, 2)
    return {
        "rss_mb_at": at,
        "growth_percent": growth,
        "requests": samples[-1]["requests"] if samples else 0,
        "errors": errors,
        "timed_out": timed_out,
        "samples": samples,
    }


# --- Markdown ----------------------------------------------------------------------------------

THROUGHPUT_HEADER = ["target", "conns", "req/s", "p50 ms", "p99 ms", "errors", "server CPU us/req"]
STREAMING_HEADER = [
    "target",
    "TTFB p50 ms",
    "TTFB p99 ms",
    "SSE complete",
    "max-gap p50 ms",
    "max-gap p99 ms",
    "max-gap max ms",
    "SSE first-event p99 ms",
    "server CPU ms/stream",
]
MEMORY_HEADER = ["target", "start-up s", "idle MB", "after load MB", "peak MB"]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _throughput_rows(targets: Results) -> list[list[str]]:
    return [
        [
            name,
            _fmt(p["connections"]),
            _fmt(p["rps"], 0),
            _fmt(p["p50_ms"]),
            _fmt(p["p99_ms"]),
            _fmt(p["non_2xx"] + p["socket_errors"]),
            _fmt(p.get("server_cpu_us_per_request"), 1),
        ]
        for name, target in targets.items()
        for p in target.get("throughput", [])
    ]


def _streaming_rows(targets: Results) -> list[list[str]]:
    rows = []
    for name, target in targets.items():
        ttfb, sse = target.get("ttfb", {}), target.get("sse", {})
        if not ttfb and not sse:
            continue
        complete = f"{sse['completed']}/{sse['streams']}" if sse else "n/a"
        rows.append(
            [name, _fmt(dig(ttfb, "ttfb_ms", "p50")), _fmt(dig(ttfb, "ttfb_ms", "p99")), complete]
            + [_fmt(dig(sse, "max_gap_ms", key), 1) for key in ("p50", "p99", "max")]
            + [_fmt(dig(sse, "ttfb_ms", "p99"), 1), _fmt(dig(sse, "server_cpu_ms_per_stream"), 2)]
        )
    return rows


def _memory_rows(targets: Results) -> list[list[str]]:
    rows = []
    for name, target in targets.items():
        memory = target.get("memory")
        if memory:
            idle, after = memory.get("idle", {}), memory.get("after_load", {})
            sizes = [_fmt(idle.get("rss_mb"), 1), _fmt(after.get("rss_mb"), 1), _fmt(after.get("peak_mb"), 1)]
            rows.append([name, _fmt(target.get("startup_s"), 2), *sizes])
    return rows


def _soak_rows(targets: Results) -> list[list[str]]:
    rows = []
    for name, target in targets.items():
        soak = target.get("soak")
        if soak:
            at = [_fmt(value, 1) for value in soak["rss_mb_at"].values()]
            rows.append([name, _fmt(soak["requests"]), *at, _fmt(soak["growth_percent"], 2), _fmt(soak["errors"])])
    return rows


def _import_lines(imported: Results | None) -> list[str]:
    if not imported:
        return []
    if "error" in imported:
        return ["", f"`import sluicegate` failed: {imported['error']}"]
    slow = ", ".join(f"{row['module']} {row['self_ms']:.1f}" for row in imported.get("slowest_modules", [])[:5])
    return [
        "",
        f"`import sluicegate`: {imported['import_ms']} ms (best of 5; whole `python -c` process "
        f"{imported['process_ms']} ms, bare interpreter {imported['bare_interpreter_ms']} ms)",
        f"largest self import times (ms): {slow}",
    ]


def _revision(meta: Results) -> str:
    head, dirty = dig(meta, "git", "head"), dig(meta, "git", "dirty")
    return "" if head is None else f", src at {head}" + (" + uncommitted changes" if dirty else "")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _noise_lines(targets: Results) -> list[str]:
    busy = {f"during {name}": target.get("foreign_cpu_cores", 0.0) for name, target in targets.items()}
    return [
        f"- **noisy**: other processes kept {cores} cores busy {when}"
        for when, cores in busy.items()
        if cores > NOISY_CORES
    ]


def _checks_rows(results: Results) -> list[list[str]]:
    marks: dict[bool | None, str] = {True: "yes", False: "**NO**", None: "n/a"}
    return [
        [name, row["goal"], _fmt(row["value"]), row["limit"], marks[row["ok"]]]
        for name, rows in results.get("checks", {}).items()
        for row in rows
    ]


def _overhead_rows(results: Results) -> list[list[str]]:
    return [
        [name, key, _fmt(value)] for name, added in results.get("overhead", {}).items() for key, value in added.items()
    ]


def markdown(results: Results) -> str:
    meta, targets = results["meta"], results["targets"]
    lines = [
        f"## Sluicegate bench, {meta['date']}",
        f"server core {meta['server_core']}, load core {meta['load_core']}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}" + (f", server {meta['server']}" if meta["server"] else "") + _revision(meta),
    ]
    lines += [f"- note: {_last_line(note)}" for note in meta.get("notes", [])]
    lines += [f"- {name}: **{_last_line(target['error'])}**" for name, target in targets.items() if "error" in target]
    lines += _noise_lines(targets)
    sections: list[tuple[str, list[str], Callable[[Results], list[list[str]]]]] = [
        ("Non-streaming POST /v1/chat/completions (wrk -t1)", THROUGHPUT_HEADER, _throughput_rows),
        ("Streaming: TTFB (sequential, 1 conn) and concurrent SSE streams", STREAMING_HEADER, _streaming_rows),
        ("Start-up (to readiness) and memory (VmRSS of the server's process tree)", MEMORY_HEADER, _memory_rows),
    ]
    for title, header, rows_of in sections:
        rows = rows_of(targets)
        if rows:
            lines += ["", f"### {title}", "", *_table(header, rows)]
    soak = _soak_rows(targets)
    if soak:
        checkpoints = next(iter(t["soak"]["rss_mb_at"] for t in targets.values() if "soak" in t))
        header = ["target", "requests", *[f"RSS MB @{int(c):,}" for c in checkpoints], "growth %", "errors"]
        lines += ["", "### Soak (wrk, 64 conns)", "", *_table(header, soak)]
    lines += _import_lines(results.get("import"))
    if results.get("overhead"):
        lines += ["", "### Overhead vs direct", "", *_table(["target", "measure", "value"], _overhead_rows(results))]
        lines += ["", "### Goals", "", *_table(["target", "goal", "value", "limit", "ok"], _checks_rows(results))]
    return "\n".join(lines)
