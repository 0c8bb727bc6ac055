"""Config sections owned by governance: the top-level `governance:`, per-alias limits, prices.

Per-deployment limits (`deployments[].rpm`, `tpm`, `max_concurrent`) belong to routing: a deployment over them
is skipped by the router. Keys and teams carry their own limits in the database, set through the admin API.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class AliasLimitsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Limits every caller of one alias shares (`models[].limits`)."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_parallel: PositiveInt | None = None


class PriceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """USD per 1M tokens: one entry of the price table, or of `governance.prices`."""

    input: NonNegative = 0.0
    output: NonNegative = 0.0
    #: prompt tokens read from the provider's prompt cache; default: the input price
    cached_input: NonNegative | None = None
    #: prompt tokens written to the provider's prompt cache (Anthropic); default: the input price
    cache_write: NonNegative | None = None
    #: reasoning / thinking tokens; default: the output price
    reasoning: NonNegative | None = None
    #: USD added to every request (search-grounded models bill per request)
    per_request: NonNegative = 0.0


class GovernanceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The top-level `governance:` section. Keys, teams and spend live in `database_url`; shared limits in
    `redis_url`; the master key is the top-level `master_key`."""

    #: seconds a key or team looked up in the database is trusted before it is read again; also how long a
    #: revocation made on another replica takes to be seen here (on this replica it is seen at once)
    key_cache_ttl: NonNegative = 5.0
    #: HMAC secret mixed into stored key hashes; changing it invalidates every virtual key
    key_pepper: str | None = None
    #: what to do when Redis cannot be reached: local (this replica's own counters), open (no limits),
    #: closed (refuse with 503)
    redis_failure: Literal["local", "open", "closed"] = "local"
    #: seconds to wait for Redis before treating it as unreachable (for a second, then it is tried again); this
    #: includes the wait for a busy event loop, so keep it well above Redis' own latency
    redis_timeout: Positive = 1.0
    #: prefix of every Redis key governance writes
    redis_prefix: str = "sluicegate:gov:"
    #: spend records are written when this many are waiting, or every `spend_flush_interval` seconds
    spend_batch_size: PositiveInt = 200
    spend_flush_interval: Positive = 1.0
    #: a price table in the format of the shipped `prices.toml`, replacing it
    prices_file: str | None = None
    #: per-deployment prices, keyed `<provider>/<model>` as in `x-sluicegate-provider`; they win over the table
    #: and over the deployment's `input_price` / `output_price`
    prices: dict[str, PriceConfig] = {}
    #: `x-sluicegate-cost` on non-streamed answers and `cost` in the final stream chunk
    cost_in_response: bool = True
    #: seconds between re-reads of budget spend from the database (without Redis only)
    budget_refresh: Positive = 30.0
    #: seconds a concurrency slot is held at most when a replica dies without releasing it (Redis only)
    lease_seconds: Positive = 900.0
    #: auto (tiktoken with the packaged cl100k_base when installed, else the estimate) | estimate
    tokenizer: Literal["auto", "estimate"] = "auto"
