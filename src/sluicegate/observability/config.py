"""Config section owned by observability: the top-level `observability:`."""

from __future__ import annotations

import msgspec


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: serve `GET /metrics` and count every request (a few in-memory counter updates per request)
    enabled: bool = True
    #: answer `GET /metrics` only with the master key (as a bearer token); scrapers are usually trusted networks
    require_key: bool = False
    #: add `sluicegate_key_*` series labelled with the virtual key's id
    per_key: bool = False
    #: at most this many distinct key ids get their own label value; the rest are counted as `other`
    max_keys: int = 100


class LogStoreConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: None: on when a database is configured (`database_url` here or at the top level); true/false forces it
    enabled: bool | None = None
    #: sqlite:///path.db or postgresql://...[?search_path=SCHEMA]; default: the top-level `database_url`,
    #: else sqlite:///sluicegate.db
    database_url: str | None = None
    #: raw request rows older than this are deleted
    retention_days: float = 30.0
    #: hourly rollups (the dashboard's long ranges) are kept this long; minute rollups for 8 days
    rollup_retention_days: float = 400.0
    #: rows written per database round trip
    batch_size: int = 500
    #: seconds between writes when fewer than `batch_size` rows are waiting
    flush_interval: float = 1.0
    #: records held in memory while the database is slow or down; beyond it the oldest are dropped (and counted)
    max_queue: int = 50_000


class CallbackConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: webhook | langfuse
    type: str
    #: webhook: the URL records are POSTed to; langfuse: the host, e.g. https://cloud.langfuse.com
    url: str
    #: extra request headers (for instance an Authorization header for the webhook)
    headers: dict[str, str] = {}
    #: langfuse: project keys, sent as HTTP basic auth
    public_key: str | None = None
    secret_key: str | None = None
    #: send prompts to this callback (only when `log_prompts` is on as well)
    include_prompts: bool = False
    batch_size: int = 100
    flush_interval: float = 1.0
    max_queue: int = 10_000
    #: seconds for one delivery; a failed batch is retried `retries` times with backoff, then dropped
    timeout: float = 10.0
    retries: int = 2


class TracingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: OpenTelemetry spans; needs `pip install 'sluicegate[otel]'`
    enabled: bool = False
    #: otlp (OTLP over HTTP/protobuf) | console | none (spans are created and propagated, never exported)
    exporter: str = "otlp"
    #: OTLP traces URL; default: the OTEL_EXPORTER_OTLP_* environment variables, else http://localhost:4318/v1/traces
    endpoint: str | None = None
    headers: dict[str, str] = {}
    service_name: str = "sluicegate"
    #: fraction of new traces sampled; a client's sampled `traceparent` flag is always followed
    sample_ratio: float = 1.0


class ObservabilityConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: one JSON line per finished request on the `sluicegate.requests` logger
    log_requests: bool = False
    #: also keep the (post-guardrail) prompt in logs, the log store and callbacks; off by default
    log_prompts: bool = False
    metrics: MetricsConfig = MetricsConfig()
    log_store: LogStoreConfig = LogStoreConfig()
    callbacks: list[CallbackConfig] = []
    tracing: TracingConfig = TracingConfig()
    #: serve the web dashboard at /ui (behind the master key)
    dashboard: bool = True
