"""Config sections owned by caching: the top-level `cache:` and `idempotency:`, and the per-alias override.

Every key and its default is documented in docs/caching.md; that file and these structs change together.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
Rate = Annotated[float, msgspec.Meta(gt=0, lt=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(gt=0)]


class SemanticConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = False
    #: cosine similarity a cached prompt needs to answer a new one (static mode)
    threshold: Share = 0.85
    #: minilm-l6 (local, from the `semantic` extra) or gateway:<alias> (one of this gateway's embeddings aliases)
    model: str = "minilm-l6"
    #: static: one threshold; learned: per-entry thresholds learned online towards target_false_hit_rate
    mode: Literal["static", "learned"] = "static"
    #: learned mode: the share of semantic hits allowed to be wrong
    target_false_hit_rate: Rate = 0.02
    #: learned mode: two answers agree (the cached one was right) when their embeddings are this similar
    answer_similarity: Share = 0.9
    #: veto hits whose numbers, negations, names or swapped words differ (see cache/guard.py)
    guard: bool = True
    #: full: everything but the last user turn must match exactly; system_and_tools: earlier turns may differ
    context: Literal["full", "system_and_tools"] = "full"
    #: entries in the in-process vector index (across aliases); the least recently used go first
    max_entries: Positive = 100_000


class CacheConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: cache every alias that does not say `cache: false` (otherwise only aliases with `cache: true|{...}`)
    enabled: bool = False
    #: memory | redis
    backend: Literal["memory", "redis"] = "memory"
    #: redis://host:port/db for backend: redis (falls back to the top-level redis_url)
    url: str | None = None
    #: seconds an answer stays cached
    ttl: Seconds = 3600.0
    #: memory backend: total bytes of cached answers before the least recently used go
    max_bytes: Positive = 256 * 1024 * 1024
    #: prefix of every cache key (Redis key prefix); aliases and virtual keys may narrow it
    namespace: str = "sluicegate"
    #: cache requests that ask for temperature > 0 (their answers are meant to vary)
    cache_temperature: bool = False
    #: keep a separate cache per virtual key instead of one shared by every caller
    per_key: bool = False
    #: seconds a Redis call may take before the request goes on uncached
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 0.05
    semantic: SemanticConfig = SemanticConfig()


class AliasSemanticConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool | None = None
    threshold: Share | None = None
    mode: Literal["static", "learned"] | None = None
    target_false_hit_rate: Rate | None = None
    guard: bool | None = None
    context: Literal["full", "system_and_tools"] | None = None


class AliasCacheConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ttl: Seconds | None = None
    namespace: str | None = None
    cache_temperature: bool | None = None
    per_key: bool | None = None
    semantic: bool | AliasSemanticConfig | None = None


class IdempotencyConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`Idempotency-Key` replay: the first request with a key runs, repeats get its stored answer."""

    enabled: bool = True
    #: sqlite | redis | postgres | memory
    backend: Literal["sqlite", "redis", "postgres", "memory"] = "sqlite"
    #: sqlite: a file path or sqlite:///path (default ./sluicegate-idempotency.db); redis://...; postgresql://...
    url: str | None = None
    #: seconds a finished answer stays replayable
    retention: Seconds = 86400.0
    #: seconds a running request holds its key without renewing it (a crashed replica's key frees after this)
    lease: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: seconds a repeat waits for the first request to finish before answering 409
    wait: Seconds = 600.0
    #: the SQLite / PostgreSQL table name, and the Redis key prefix
    prefix: str = "sluicegate_idempotency"
