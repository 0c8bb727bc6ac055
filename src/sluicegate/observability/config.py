"""Config section owned by observability: the top-level `observability:`."""

from __future__ import annotations

import msgspec


class ObservabilityConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: one JSON line per finished request on the `sluicegate.requests` logger
    log_requests: bool = False
