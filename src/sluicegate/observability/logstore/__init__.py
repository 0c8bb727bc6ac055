"""The request log store: every finished request in SQLite or PostgreSQL, with rollups for the dashboard."""

from sluicegate.observability.logstore.queries import RANGES, RequestFilter
from sluicegate.observability.logstore.store import LogStore, resolve_url

__all__ = ["RANGES", "LogStore", "RequestFilter", "resolve_url"]
