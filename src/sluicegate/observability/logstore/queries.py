"""What the dashboard and the admin API ask the log store, written to stay fast at millions of rows.

- Lists of requests walk an index `(filtered column, ts)` backwards (`ORDER BY ts DESC LIMIT n`), so a page
  costs the same at a thousand rows or at millions, with or without a time range.
- Charts and totals read the rollup tables, never the request rows: minute rollups for ranges up to a day,
  hourly ones beyond. Percentiles come from the latency histogram kept in every rollup row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from sluicegate.observability.logstore import schema
from sluicegate.observability.logstore.backends import Backend

#: named ranges the dashboard offers, in seconds
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
#: charts aim at about this many points
_POINTS = 90
GROUPS = ("alias", "provider", "deployment", "key")
_DETAIL_COLUMNS = ("id", *schema.LOG_COLUMN_NAMES)


@dataclass(frozen=True, slots=True)
class RequestFilter:
    alias: str | None = None
    key_id: str | None = None
    deployment: str | None = None
    errors_only: bool = False
    #: start times (epoch seconds): `since <= ts < until`
    since: float | None = None
    until: float | None = None
    limit: int = 50


async def recent(backend: Backend, where: RequestFilter) -> list[dict[str, Any]]:
    """Newest first by start time. Each filter column has an index `(column, ts)`, errors a partial one."""
    conditions: list[str] = []
    params: list[object] = []
    for column, value in (("alias", where.alias), ("key_id", where.key_id), ("deployment", where.deployment)):
        if value:
            conditions.append(f"{column} = ?")
            params.append(value)
    if where.errors_only:
        conditions.append("status >= 400")
    if where.since is not None:
        conditions.append("ts >= ?")
        params.append(where.since)
    if where.until is not None:
        conditions.append("ts < ?")
        params.append(where.until)
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {', '.join(_DETAIL_COLUMNS)} FROM {schema.LOGS}{clause} ORDER BY ts DESC LIMIT ?"
    rows = await backend.fetch(sql, [*params, max(1, min(where.limit, 1000))])
    return [_detail(row) for row in rows]


async def by_request_id(backend: Backend, request_id: str) -> dict[str, Any] | None:
    sql = f"SELECT {', '.join(_DETAIL_COLUMNS)} FROM {schema.LOGS} WHERE request_id = ? ORDER BY ts DESC LIMIT 1"
    rows = await backend.fetch(sql, [request_id])
    return _detail(rows[0]) if rows else None


def _detail(row: Sequence[Any]) -> dict[str, Any]:
    item = dict(zip(_DETAIL_COLUMNS, row, strict=True))
    for flag in ("stream", "usage_estimated", "cancelled"):
        item[flag] = bool(item[flag])
    attempts = msgspec.json.decode(item["attempts"]) if item["attempts"] else []
    item["attempts"] = [{"deployment": a[0], "status": a[1], "error": a[2], "latency_ms": a[3]} for a in attempts]
    item["guardrails"] = msgspec.json.decode(item["guardrails"]) if item["guardrails"] else {}
    if item["prompt"] is not None:
        item["prompt"] = msgspec.json.decode(item["prompt"])
    return item


# --- charts -------------------------------------------------------------------------------------------

#: what a split-by chart (one line per alias, key, ...) shows; the latency and cache charts use the totals
_GROUP_METRICS = ("requests", "errors", "cost_usd", "input_tokens", "output_tokens")
_ROUTE_SUMS = ", ".join(f"SUM({m})" for m in schema.ROUTE_METRICS)
_GROUP_SUMS = ", ".join(f"SUM({m})" for m in _GROUP_METRICS)
_H0 = len(schema.BASE_METRICS)
_INDEX = {name: i for i, name in enumerate(schema.ROUTE_METRICS)}


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int
    step: int

    @property
    def points(self) -> int:
        return (self.end - self.start) // self.step


def route_resolution(seconds: int) -> int:
    return schema.MINUTE if seconds <= schema.DAY else schema.HOUR


def key_resolution(seconds: int) -> int:
    """Keys can be thousands: their charts use coarser rollups sooner than the routes' (measured by the bench)."""
    if seconds <= 3600:
        return schema.MINUTE
    return schema.HOUR if seconds <= 7 * schema.DAY else schema.DAY


def window(seconds: int, now: float, resolution: int) -> Window:
    step = resolution * max(1, round(seconds / resolution / _POINTS))
    end = (int(now) // step + 1) * step
    return Window(end - math.ceil(seconds / step) * step, end, step)


def _route_table(resolution: int) -> schema.Rollup:
    return schema.ROUTE_MINUTE if resolution == schema.MINUTE else schema.ROUTE_HOUR


def _key_table(resolution: int) -> schema.Rollup:
    return {schema.MINUTE: schema.KEY_MINUTE, schema.HOUR: schema.KEY_HOUR}.get(resolution, schema.KEY_DAY)


async def series(backend: Backend, seconds: int, now: float, group: str | None = None, top: int = 8) -> dict[str, Any]:
    """Per-slot totals (every chart) and, split by `group`, the top `top` groups by requests plus `other`."""
    resolution = route_resolution(seconds)
    if group == "key":
        resolution = max(resolution, key_resolution(seconds))
    win = window(seconds, now, resolution)
    sql = (
        f"SELECT (bucket - ?) / ?, {_ROUTE_SUMS} FROM {_route_table(route_resolution(seconds)).table} "
        "WHERE bucket >= ? AND bucket < ? GROUP BY 1"
    )
    slots = [[0.0] * len(schema.ROUTE_METRICS) for _ in range(win.points)]
    for row in await backend.fetch(sql, [win.start, win.step, win.start, win.end]):
        slots[int(row[0])] = [float(v or 0) for v in row[1:]]
    overall = [sum(column) for column in zip(*slots, strict=True)] if slots else [0.0] * len(schema.ROUTE_METRICS)
    groups = await _group_series(backend, group, seconds, win, top, slots) if group in GROUPS else []
    return {
        "start": win.start,
        "end": win.end,
        "step": win.step,
        "timestamps": [win.start + i * win.step for i in range(win.points)],
        "group": group,
        "groups": groups,
        "total": _columns(slots, win.step),
        "summary": _summary(overall, seconds),
    }


async def _group_series(
    backend: Backend, group: str | None, seconds: int, win: Window, top: int, totals: list[list[float]]
) -> list[dict[str, Any]]:
    per_group = await (_key_slots if group == "key" else _route_slots)(backend, str(group), seconds, win, top)
    ranked = sorted(per_group, key=lambda name: -sum(slot[0] for slot in per_group[name]))
    names = ranked[:top]
    result = [{"name": name or "(none)", **_group_columns(per_group[name], win.step)} for name in names]
    total_requests = sum(slot[_INDEX["requests"]] for slot in totals)
    if total_requests > sum(sum(slot[0] for slot in per_group[name]) for name in names):
        # everything that is not a top group: the totals minus the top groups
        positions = [_INDEX[m] for m in _GROUP_METRICS]
        other = [
            [total[p] - sum(per_group[name][i][j] for name in names) for j, p in enumerate(positions)]
            for i, total in enumerate(totals)
        ]
        result.append({"name": "other", **_group_columns(other, win.step)})
    return result


Slots = dict[str, list[list[float]]]


async def _route_slots(backend: Backend, column: str, seconds: int, win: Window, top: int) -> Slots:
    """Aliases, providers and deployments come from the config, so there are few: one pass over the range."""
    table = _route_table(route_resolution(seconds)).table
    rows = await backend.fetch(
        f"SELECT (bucket - ?) / ?, {column}, {_GROUP_SUMS} FROM {table} WHERE bucket >= ? AND bucket < ? GROUP BY 1, 2",
        [win.start, win.step, win.start, win.end],
    )
    return _slots(rows, win)


async def _key_slots(backend: Backend, column: str, seconds: int, win: Window, top: int) -> Slots:
    """Keys can be thousands: rank them first, then read only the top keys' rows through the key index."""
    resolution = max(key_resolution(seconds), route_resolution(seconds))
    table = _key_table(resolution).table
    ranked = await _per_key(backend, win, resolution, ("requests",), top)
    names = [str(row[0]) for row in ranked]
    if not names:
        return {}
    marks = ", ".join("?" for _ in names)
    rows = await backend.fetch(
        f"SELECT (bucket - ?) / ?, key_id, {_GROUP_SUMS} FROM {table} "
        f"WHERE key_id IN ({marks}) AND bucket >= ? AND bucket < ? GROUP BY 1, 2",
        [win.start, win.step, *names, win.start, win.end],
    )
    return _slots(rows, win)


def _slots(rows: list[tuple[Any, ...]], win: Window) -> Slots:
    per_group: Slots = {}
    for row in rows:
        slots = per_group.get(str(row[1]))
        if slots is None:
            slots = per_group[str(row[1])] = [[0.0] * len(_GROUP_METRICS) for _ in range(win.points)]
        slots[int(row[0])] = [float(v or 0) for v in row[2:]]
    return per_group


def _group_columns(slots: list[list[float]], step: int) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {name: [s[i] for s in slots] for i, name in enumerate(_GROUP_METRICS)}
    out["rate"] = [s[0] / step for s in slots]
    return out


def _columns(slots: list[list[float]], step: int) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {
        name: [s[_INDEX[name]] for s in slots]
        for name in ("requests", "errors", "cost_usd", "input_tokens", "output_tokens", "cache_hits", "cache_lookups")
    }
    out["rate"] = [s[_INDEX["requests"]] / step for s in slots]
    out["p50"] = [schema.percentile(s[_H0:], 0.5) for s in slots]
    out["p99"] = [schema.percentile(s[_H0:], 0.99) for s in slots]
    out["cache_hit_rate"] = [
        s[_INDEX["cache_hits"]] / s[_INDEX["cache_lookups"]] if s[_INDEX["cache_lookups"]] else None for s in slots
    ]
    return out


def _summary(values: list[float], seconds: int) -> dict[str, float | None]:
    metric = dict(zip(schema.ROUTE_METRICS, values, strict=False))
    requests = metric.get("requests", 0.0)
    histogram = values[_H0:]
    return {
        "requests": requests,
        "rate": requests / seconds,
        "errors": metric["errors"],
        "error_rate": metric["errors"] / requests if requests else None,
        "cost_usd": metric["cost_usd"],
        "input_tokens": metric["input_tokens"],
        "output_tokens": metric["output_tokens"],
        "cache_hit_rate": metric["cache_hits"] / metric["cache_lookups"] if metric["cache_lookups"] else None,
        "p50_ms": schema.percentile(histogram, 0.5) if histogram else None,
        "p99_ms": schema.percentile(histogram, 0.99) if histogram else None,
        "avg_ttft_ms": metric["ttft_ms_sum"] / metric["ttft_count"] if metric["ttft_count"] else None,
        "retries": metric["retries"],
        "fallbacks": metric["fallbacks"],
    }


async def _per_key(
    backend: Backend, win: Window, resolution: int, columns: tuple[str, ...], limit: int
) -> list[tuple[Any, ...]]:
    """Sums per key over the window, most requests first: whole days from the daily rollups and only the
    partial days at either end from the hourly ones (a week of two thousand keys is 14k + 96k rows, not 336k)."""
    if resolution == schema.MINUTE:
        parts = [(schema.KEY_MINUTE.table, win.start, win.end)]
    else:
        first_day = -(-win.start // schema.DAY) * schema.DAY
        last_day = win.end // schema.DAY * schema.DAY
        if first_day >= last_day:
            parts = [(schema.KEY_HOUR.table, win.start, win.end)]
        else:
            parts = [
                (schema.KEY_HOUR.table, win.start, first_day),
                (schema.KEY_DAY.table, first_day, last_day),
                (schema.KEY_HOUR.table, last_day, win.end),
            ]
            parts = [part for part in parts if part[1] < part[2]]
    listed = ", ".join(columns)
    selects = [f"SELECT key_id, {listed} FROM {table} WHERE bucket >= ? AND bucket < ?" for table, _, _ in parts]
    source = parts[0][0] if len(parts) == 1 else f"({' UNION ALL '.join(selects)}) AS parts"
    where = " WHERE bucket >= ? AND bucket < ?" if len(parts) == 1 else ""
    sums = ", ".join(f"SUM({c})" for c in columns)
    params: list[object] = [bound for _, lo, hi in parts for bound in (lo, hi)]
    return await backend.fetch(
        f"SELECT key_id, {sums} FROM {source}{where} GROUP BY key_id ORDER BY 2 DESC LIMIT ?", [*params, limit]
    )


async def totals_by(backend: Backend, group: str, seconds: int, now: float) -> list[dict[str, Any]]:
    """One row per alias/provider/deployment/key over the range: the tables beside the charts."""
    if group == "key":
        resolution = max(key_resolution(seconds), route_resolution(seconds))
        win = window(seconds, now, resolution)
        rows = await _per_key(backend, win, resolution, schema.BASE_METRICS, 1000)
        return [{"name": row[0], **_summary([float(v or 0) for v in row[1:]], seconds)} for row in rows]
    resolution = route_resolution(seconds)
    table, column, metrics = _route_table(resolution).table, group, schema.ROUTE_METRICS
    win = window(seconds, now, resolution)
    sums = ", ".join(f"SUM({m})" for m in metrics)
    sql = (
        f"SELECT {column}, {sums} FROM {table} WHERE bucket >= ? AND bucket < ? "
        f"GROUP BY {column} ORDER BY 2 DESC LIMIT 1000"
    )
    rows = await backend.fetch(sql, [win.start, win.end])
    return [{"name": row[0], **_summary([float(v or 0) for v in row[1:]], seconds)} for row in rows]


async def attempt_health(backend: Backend, seconds: int, now: float) -> dict[str, dict[str, int]]:
    """Upstream attempts and failures per deployment (failed-over attempts included) over recent minutes."""
    start = (int(now) - seconds) // schema.MINUTE * schema.MINUTE
    sql = (
        f"SELECT deployment, SUM(attempts), SUM(failures) FROM {schema.ATTEMPTS} WHERE bucket >= ? GROUP BY deployment"
    )
    rows = await backend.fetch(sql, [start])
    return {str(row[0]): {"attempts": int(row[1] or 0), "failures": int(row[2] or 0)} for row in rows}
