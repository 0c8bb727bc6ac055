"""What the dashboard's JSON endpoints answer, read from the log store, the router and the key store.

Each function reads what exists and says when a part is missing (no log store configured, no key store,
a router without health), so the page renders whatever the gateway has.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sluicegate.observability.logstore import RANGES, RequestFilter
from sluicegate.observability.logstore.queries import GROUPS

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway

log = logging.getLogger("sluicegate.observability")

NO_LOG_STORE = (
    "The request log store is off, so there is no history to chart. Set `database_url` (or "
    "`observability.log_store.enabled: true`) in the config to keep one."
)
NO_KEY_STORE = (
    "No key store: virtual keys need the governance database (`database_url`, or a master key, which "
    "defaults it to sqlite:///sluicegate.db)."
)
#: deployment health looks at this recent window
HEALTH_WINDOW = 900


def range_seconds(name: str | None) -> int:
    return RANGES.get(name or "1h", RANGES["1h"])


def group_name(name: str | None) -> str | None:
    return name if name in GROUPS else None


async def overview(gateway: Gateway, range_name: str | None, group: str | None) -> dict[str, Any]:
    store = gateway.recorder.log_store
    seconds = range_seconds(range_name)
    if store is None:
        return {"log_store": False, "notice": NO_LOG_STORE, "range": seconds}
    now = time.time()
    chosen = group_name(group)
    series = await store.series(seconds, chosen, now=now)
    return {"log_store": True, "range": seconds, "now": now, **series}


async def requests(gateway: Gateway, where: RequestFilter) -> dict[str, Any]:
    store = gateway.recorder.log_store
    if store is None:
        return {"log_store": False, "notice": NO_LOG_STORE, "data": []}
    return {"log_store": True, "data": await store.recent(where)}


async def one_request(gateway: Gateway, request_id: str) -> dict[str, Any] | None:
    store = gateway.recorder.log_store
    return None if store is None else await store.get(request_id)


async def deployments(gateway: Gateway) -> dict[str, Any]:
    """The router's live view (breaker, in flight, recent errors) beside the log store's last 15 minutes."""
    rows: dict[str, dict[str, Any]] = {}
    for item in _router_health(gateway):
        rows[item["id"]] = item
    store = gateway.recorder.log_store
    if store is not None:
        now = time.time()
        for total in await store.totals_by("deployment", HEALTH_WINDOW, now=now):
            name = total["name"]
            if not name:
                continue
            row = rows.setdefault(name, {"id": name})
            row["window"] = {k: total[k] for k in ("requests", "errors", "error_rate", "p50_ms", "p99_ms")}
        for name, counts in (await store.attempt_health(HEALTH_WINDOW, now=now)).items():
            row = rows.setdefault(name, {"id": name})
            row.setdefault("window", {})["attempts"] = counts["attempts"]
            row["window"]["attempt_failures"] = counts["failures"]
    return {"window_s": HEALTH_WINDOW, "data": sorted(rows.values(), key=lambda row: str(row["id"]))}


def _router_health(gateway: Gateway) -> list[dict[str, Any]]:
    try:
        from sluicegate.server.routes.deployments import deployment_health
    except ImportError:
        return [
            {"id": f"{d.provider}/{d.model}", "aliases": [m.name]} for m in gateway.config.models for d in m.deployments
        ]
    try:
        data: list[dict[str, Any]] = deployment_health(gateway)["data"]
    except Exception:  # a health view that fails must not take the page with it
        log.exception("reading deployment health failed")
        return []
    return data


async def keys(gateway: Gateway, range_name: str | None) -> dict[str, Any]:
    """The virtual keys (from the governance store) with their usage over the range (from the log store).

    Key ids that have usage but are not in the store (no key store, or a key since deleted) are listed too,
    by id only.
    """
    usage: dict[str, dict[str, Any]] = {}
    log_store = gateway.recorder.log_store
    if log_store is not None:
        for total in await log_store.totals_by("key", range_seconds(range_name)):
            if total["name"]:
                usage[str(total["name"])] = total
    store = _key_store(gateway)
    notice = None
    data: list[dict[str, Any]] = []
    if store is None:
        notice = NO_KEY_STORE
    else:
        try:
            records = await store.list_keys()
        except Exception as exc:
            log.warning("listing keys for the dashboard failed: %s", exc)
            records, notice = [], f"The key store could not be read: {exc}"
        for record in records:
            public: dict[str, Any] = record.to_public()
            public["usage"] = usage.pop(str(public.get("id")), None)
            data.append(public)
    data.extend({"id": key_id, "name": None, "known": False, "usage": total} for key_id, total in usage.items())
    return {"key_store": store is not None, "notice": notice, "data": data}


def _key_store(gateway: Gateway) -> Any:
    directory = getattr(gateway.auth, "directory", None)
    return getattr(directory, "store", None)
