"""Config sections owned by caching: the top-level `cache:` and `idempotency:`, and the per-alias override."""

from __future__ import annotations

import msgspec


class CacheConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: memory | redis
    backend: str = "memory"
    url: str | None = None
    ttl: float = 3600.0


class AliasCacheConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ttl: float | None = None
