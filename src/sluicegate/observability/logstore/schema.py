"""The log store's tables, and how finished requests become rows and rollups.

One table holds a row per request (for "recent requests" and look-ups by id); rollup tables hold per-minute
and per-hour sums per route (alias, provider, deployment) and per key, so that the dashboard's charts read
a few thousand pre-aggregated rows instead of millions of requests. Rollups are summed in Python per batch
and upserted (`count = count + excluded.count`), so several gateways can share one database.

The SQL here is common to SQLite and PostgreSQL; `?` placeholders are rewritten for PostgreSQL.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from sluicegate.context import RequestRecord

LOGS = "sluicegate_request_logs"

#: columns of the request table, in insert order (the `id` primary key is generated)
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL"),
    ("request_id", "TEXT"),
    ("endpoint", "TEXT"),
    ("alias", "TEXT"),
    ("stream", "INTEGER"),
    ("key_id", "TEXT"),
    ("team", "TEXT"),
    ("deployment", "TEXT"),
    ("provider", "TEXT"),
    ("status", "INTEGER"),
    ("error_code", "TEXT"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cached_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("usage_estimated", "INTEGER"),
    ("cost_usd", "REAL"),
    ("cache", "TEXT"),
    ("latency_ms", "REAL"),
    ("ttft_ms", "REAL"),
    ("cancelled", "INTEGER"),
    ("attempts", "TEXT"),
    ("guardrails", "TEXT"),
    ("prompt", "TEXT"),
)
LOG_COLUMN_NAMES = tuple(name for name, _ in LOG_COLUMNS)

#: (name, columns, partial-index condition): what the dashboard and the admin API filter and sort by
LOG_INDEXES: tuple[tuple[str, str, str | None], ...] = (
    ("ts", "ts", None),
    ("request_id", "request_id, ts", None),
    ("key", "key_id, ts", None),
    ("alias", "alias, ts", None),
    ("deployment", "deployment, ts", None),
    ("errors", "ts", "status >= 400"),
)

#: upper bounds (ms) of the latency histogram kept in every rollup row; the last bucket is open
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000,
    120000,
)  # fmt: skip
HISTOGRAM = tuple(f"h{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))

#: summed per rollup row, in this order; route rollups add the latency histogram
BASE_METRICS: tuple[str, ...] = (
    "requests",
    "errors",
    "cancelled",
    "cache_hits",
    "cache_lookups",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_count",
    "ttft_ms_sum",
    "retries",
    "fallbacks",
)
ROUTE_METRICS = (*BASE_METRICS, *HISTOGRAM)
_REAL_METRICS = frozenset({"cost_usd", "latency_ms_sum", "ttft_ms_sum"})
_BASE = len(BASE_METRICS)

MINUTE = 60
HOUR = 3600
DAY = 86400
#: minute rollups serve ranges up to a day; kept a little longer than the longest minute-based range
MINUTE_ROLLUP_RETENTION = 8 * DAY


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    dimensions: tuple[str, ...]
    resolution: int
    metrics: tuple[str, ...]


_ROUTE = ("alias", "provider", "deployment")
ROUTE_MINUTE = Rollup("sluicegate_usage_route_minute", _ROUTE, MINUTE, ROUTE_METRICS)
ROUTE_HOUR = Rollup("sluicegate_usage_route_hour", _ROUTE, HOUR, ROUTE_METRICS)
# Keys can be many: their rollups skip the histogram (the latency charts are per route) and add a daily level,
# so that a month of a thousand keys is thirty thousand rows, not seven hundred thousand.
KEY_MINUTE = Rollup("sluicegate_usage_key_minute", ("key_id",), MINUTE, BASE_METRICS)
KEY_HOUR = Rollup("sluicegate_usage_key_hour", ("key_id",), HOUR, BASE_METRICS)
KEY_DAY = Rollup("sluicegate_usage_key_day", ("key_id",), DAY, BASE_METRICS)
ROLLUPS = (ROUTE_MINUTE, ROUTE_HOUR, KEY_MINUTE, KEY_HOUR, KEY_DAY)

#: per deployment and minute: every upstream attempt, including the ones that failed over
ATTEMPTS = "sluicegate_attempts_minute"


def ddl(serial_pk: str, real: str = "REAL", big: str = "INTEGER") -> list[str]:
    """CREATE statements in the dialect's words for an auto-increment key, a double and a 64-bit integer."""
    columns = ", ".join(f"{name} {real if kind == 'REAL' else kind}" for name, kind in LOG_COLUMNS)
    statements = [f"CREATE TABLE IF NOT EXISTS {LOGS} (id {serial_pk}, {columns})"]
    for name, columns_, where in LOG_INDEXES:
        condition = f" WHERE {where}" if where else ""
        statements.append(f"CREATE INDEX IF NOT EXISTS {LOGS}_{name}_idx ON {LOGS} ({columns_}){condition}")
    for rollup in ROLLUPS:
        dims = ", ".join(f"{d} TEXT NOT NULL" for d in rollup.dimensions)
        metrics = ", ".join(f"{m} {real if m in _REAL_METRICS else big} NOT NULL DEFAULT 0" for m in rollup.metrics)
        key = ", ".join(("bucket", *rollup.dimensions))
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {rollup.table} (bucket {big} NOT NULL, {dims}, {metrics}, PRIMARY KEY ({key}))"
        )
        if rollup.dimensions == ("key_id",):
            # the charts of the top keys read a few keys' rows over a range
            statements.append(f"CREATE INDEX IF NOT EXISTS {rollup.table}_key_idx ON {rollup.table} (key_id, bucket)")
    statements.append(
        f"CREATE TABLE IF NOT EXISTS {ATTEMPTS} (bucket {big} NOT NULL, deployment TEXT NOT NULL, "
        f"attempts {big} NOT NULL DEFAULT 0, failures {big} NOT NULL DEFAULT 0, PRIMARY KEY (bucket, deployment))"
    )
    return statements


def insert_logs_sql() -> str:
    marks = ", ".join("?" for _ in LOG_COLUMN_NAMES)
    return f"INSERT INTO {LOGS} ({', '.join(LOG_COLUMN_NAMES)}) VALUES ({marks})"


def upsert_sql(rollup: Rollup) -> str:
    columns = ("bucket", *rollup.dimensions, *rollup.metrics)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{m} = {rollup.table}.{m} + excluded.{m}" for m in rollup.metrics)
    conflict = ", ".join(("bucket", *rollup.dimensions))
    return (
        f"INSERT INTO {rollup.table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )


def upsert_attempts_sql() -> str:
    return (
        f"INSERT INTO {ATTEMPTS} (bucket, deployment, attempts, failures) VALUES (?, ?, ?, ?) "
        f"ON CONFLICT (bucket, deployment) DO UPDATE SET attempts = {ATTEMPTS}.attempts + excluded.attempts, "
        f"failures = {ATTEMPTS}.failures + excluded.failures"
    )


# --- records to rows ----------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode

LogRow = tuple[object, ...]


def log_row(record: RequestRecord, include_prompt: bool) -> LogRow:
    usage = record.usage
    attempts = [[a.deployment, a.status, a.error, a.latency_ms] for a in record.attempts]
    return (
        record.started_at,
        record.request_id,
        record.endpoint,
        record.alias,
        int(record.stream),
        record.key_id,
        record.team,
        record.deployment,
        record.provider,
        record.status,
        record.error_code,
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
        usage.cached_tokens if usage else None,
        usage.reasoning_tokens if usage else None,
        int(record.usage_estimated),
        record.cost_usd,
        record.cache,
        record.latency_ms,
        record.ttft_ms,
        int(record.cancelled),
        _encode(attempts).decode() if attempts else None,
        _encode(record.guardrails).decode() if record.guardrails else None,
        _encode(record.prompt).decode() if include_prompt and record.prompt is not None else None,
    )


def latency_bucket(latency_ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def _base(record: RequestRecord) -> list[float]:
    """BASE_METRICS for one record, typed as the columns are (int counters, float sums)."""
    usage = record.usage
    cache = record.cache
    looked_up = cache is not None and cache != "bypass"
    ttft = record.ttft_ms
    retries, fallbacks = _moves(record)
    return [
        1,
        1 if record.status >= 400 else 0,
        1 if record.cancelled else 0,
        1 if looked_up and cache is not None and cache.endswith("hit") else 0,
        1 if looked_up else 0,
        usage.prompt_tokens if usage is not None else 0,
        usage.completion_tokens if usage is not None else 0,
        float(record.cost_usd or 0.0),
        float(record.latency_ms),
        0 if ttft is None else 1,
        0.0 if ttft is None else float(ttft),
        retries,
        fallbacks,
    ]


def _moves(record: RequestRecord) -> tuple[int, int]:
    retries = fallbacks = 0
    for previous, current in itertools.pairwise(record.attempts):
        if current.deployment == previous.deployment:
            retries += 1
        else:
            fallbacks += 1
    return retries, fallbacks


Groups = dict[tuple[object, ...], list[float]]


def rollup_groups(records: Iterable[RequestRecord]) -> tuple[dict[Rollup, Groups], dict[tuple[int, str], list[int]]]:
    """Sum a batch of records per rollup row, and upstream attempts per deployment and minute."""
    route_minute: Groups = {}
    route_hour: Groups = {}
    key_minute: Groups = {}
    key_hour: Groups = {}
    key_day: Groups = {}
    attempts: dict[tuple[int, str], list[int]] = {}
    for record in records:
        base = _base(record)
        slot = _BASE + latency_bucket(record.latency_ms)
        ts = record.started_at
        minute = int(ts // MINUTE) * MINUTE
        hour = int(ts // HOUR) * HOUR
        route = (record.alias or "", record.provider or "", record.deployment or "")
        key = record.key_id or ""
        _add_route(route_minute, (minute, *route), base, slot)
        _add_route(route_hour, (hour, *route), base, slot)
        _add(key_minute, (minute, key), base)
        _add(key_hour, (hour, key), base)
        _add(key_day, (int(ts // DAY) * DAY, key), base)
        for attempt in record.attempts:
            counts = attempts.setdefault((minute, attempt.deployment), [0, 0])
            counts[0] += 1
            if attempt.status is None or attempt.status >= 400:
                counts[1] += 1
    groups = {
        ROUTE_MINUTE: route_minute,
        ROUTE_HOUR: route_hour,
        KEY_MINUTE: key_minute,
        KEY_HOUR: key_hour,
        KEY_DAY: key_day,
    }
    return groups, attempts


def _add(groups: Groups, key: tuple[object, ...], base: list[float]) -> None:
    total = groups.get(key)
    if total is None:
        groups[key] = list(base)
        return
    for i, value in enumerate(base):
        total[i] += value


def _add_route(groups: Groups, key: tuple[object, ...], base: list[float], slot: int) -> None:
    total = groups.get(key)
    if total is None:
        total = groups[key] = [*base, *_NO_LATENCIES]
    else:
        for i, value in enumerate(base):
            total[i] += value
    total[slot] += 1


_NO_LATENCIES = (0,) * len(HISTOGRAM)


def upsert_rows(groups: Groups) -> list[tuple[object, ...]]:
    # Sorted so that concurrent writers (several gateways on one PostgreSQL) lock rows in one order.
    return [(*key, *values) for key, values in sorted(groups.items())]


# --- reading histograms back --------------------------------------------------------------------------


def percentile(histogram: Sequence[float], quantile: float) -> float | None:
    """The latency (ms) below which `quantile` of the requests fell, interpolated inside its bucket."""
    total = sum(histogram)
    if total <= 0:
        return None
    target = quantile * total
    seen = 0.0
    for index, count in enumerate(histogram):
        if count and seen + count >= target:
            lower = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
            if index >= len(LATENCY_BOUNDS_MS):
                return float(lower)
            upper = LATENCY_BOUNDS_MS[index]
            return lower + (upper - lower) * (target - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])
