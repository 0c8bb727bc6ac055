"""What one request carries through the lifecycle, and the record it leaves behind.

Every concern (governance, guardrails, cache, routing, observability) reads and fills the same
`RequestContext`; the finished `RequestRecord` is handed to the recorder once, success or failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sluicegate.providers.base import Usage


@dataclass(slots=True)
class Principal:
    """Who is calling: the master key, a virtual key, or the in-process library."""

    key_id: str | None = None
    key_name: str | None = None
    team: str | None = None
    #: aliases this caller may use; None means all
    models: frozenset[str] | None = None
    is_admin: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AttemptRecord:
    deployment: str
    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None


@dataclass(slots=True)
class RequestRecord:
    """One finished request, as metrics, spend, logs and callbacks see it. Never holds keys or prompts."""

    request_id: str
    endpoint: str = "chat"
    alias: str = ""
    stream: bool = False
    key_id: str | None = None
    team: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    status: int = 200
    error_code: str | None = None
    usage: Usage | None = None
    #: True when usage was counted by the gateway because the provider sent none
    usage_estimated: bool = False
    cost_usd: float | None = None
    #: hit | miss | semantic-hit | bypass, or None when caching is off for the alias
    cache: str | None = None
    guardrails: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    #: the client went away before the answer was complete
    cancelled: bool = False
    #: the (post-guardrail) messages or embeddings input; set only when `observability.log_prompts` is on
    prompt: Any = None


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    #: the bearer token the client sent, if any
    api_key: str | None = None
    #: set once the key was checked; in-process library calls start out trusted
    authenticated: bool = False
    principal: Principal = field(default_factory=Principal)
    #: headers to forward to the provider (request id, trace context)
    forward_headers: dict[str, str] = field(default_factory=dict)
    #: request headers that steer the gateway (x-sluicegate-*, cache-control, idempotency-key), lower-case
    control: dict[str, str] = field(default_factory=dict)
    #: extra response headers the lifecycle's steps want the client to see
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    record: RequestRecord | None = None
    #: the guardrail pipeline's per-request state (verdicts, the placeholders an answer may restore)
    guardrails: Any = None
    #: the cache's per-request state (key, embedded prompt, idempotency claim), set by `cache.lookup`
    cache_state: Any = None

    def begin(self, endpoint: str, alias: str, stream: bool) -> RequestRecord:
        self.record = RequestRecord(
            request_id=self.request_id,
            endpoint=endpoint,
            alias=alias,
            stream=stream,
            key_id=self.principal.key_id,
            team=self.principal.team,
        )
        return self.record

    def add_header(self, name: str, value: str) -> None:
        self.response_headers.append((name.encode(), value.encode()))
