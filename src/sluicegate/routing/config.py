"""Config sections owned by routing: per-alias routing and per-deployment knobs."""

from __future__ import annotations

import msgspec


class RoutingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: priority | weighted | round-robin | least-latency | least-busy | cost
    strategy: str = "priority"
    #: extra attempts per deployment on retryable failures
    retries: int = 0
