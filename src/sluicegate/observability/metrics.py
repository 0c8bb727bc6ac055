"""Prometheus metrics: every finished request updates a few in-memory counters; `GET /metrics` renders them.

Label values are bounded by construction, because a label value is a time series forever: aliases,
providers, deployments and guardrails come from the config (anything else is counted as `other`), and
values that are not in the config (error codes, key ids) get their own series only for the first N distinct
values seen. Counters live in plain dicts keyed by label tuple (an update is a lookup and an add) and
become Prometheus families only when scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sluicegate.config import Config
from sluicegate.context import RequestRecord
from sluicegate.observability.config import MetricsConfig

OTHER = "other"
NONE = "none"

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: circuit breaker states as numbers, so that `sluicegate_circuit_state == 2` alerts on an open circuit
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
_MAX_ERROR_CODES = 50


class BoundedLabel:
    """Maps a raw value to a label value from a bounded set."""

    def __init__(self, allowed: Iterable[str] | None = None, limit: int = 0) -> None:
        self._allowed = frozenset(allowed) if allowed is not None else None
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        if self._allowed is not None:
            return value if value in self._allowed else OTHER
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER


class _Counter:
    """A labelled counter kept in a plain dict: an update is a lookup and an add, without prometheus_client's
    per-child lock (records are emitted on the event loop's thread; a scrape copies the dict first)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(key, value)
        return family


class _Histogram:
    """Per label tuple: a count per bucket (the last one open) and the sum, made cumulative at scrape time."""

    __slots__ = ("bounds", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.bounds) + 2)
        counts[bisect.bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [*(repr(float(bound)) for bound in self.bounds), "+Inf"]
        for key, counts in list(self.values.items()):
            running = 0.0
            buckets = []
            for edge, count in zip(edges, counts, strict=False):
                running += count
                buckets.append((edge, running))
            family.add_metric(list(key), buckets, sum_value=counts[-1])
        return family


_ROUTE = ("alias", "provider")


class MetricsSink:
    """The recorder sink behind `GET /metrics`. Each gateway has its own registry."""

    def __init__(self, config: Config, settings: MetricsConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._alias = BoundedLabel(model.name for model in config.models)
        self._provider = BoundedLabel(config.providers)
        self._deployment = BoundedLabel(f"{d.provider}/{d.model}" for m in config.models for d in m.deployments)
        self._error = BoundedLabel(limit=_MAX_ERROR_CODES)
        self._guardrail = BoundedLabel(g.name for g in config.guardrails)
        self._verdict = BoundedLabel(limit=20)
        self._key = BoundedLabel(limit=settings.max_keys) if settings.per_key else None
        self.requests = _Counter("sluicegate_requests", "Finished requests.", (*_ROUTE, "status"))
        self.errors = _Counter("sluicegate_request_errors", "Failed requests by error code.", (*_ROUTE, "error"))
        self.duration = _Histogram(
            "sluicegate_request_duration_seconds",
            "Time from arrival to the last byte (streams: to the end of the stream).",
            _ROUTE,
            _DURATION_BUCKETS,
        )
        self.ttft = _Histogram(
            "sluicegate_time_to_first_token_seconds",
            "Time from arrival to the first streamed chunk.",
            _ROUTE,
            _TTFT_BUCKETS,
        )
        self.tokens = _Counter("sluicegate_tokens", "Tokens by direction (input = prompt).", (*_ROUTE, "direction"))
        self.cached_tokens = _Counter("sluicegate_cached_input_tokens", "Prompt tokens read from a cache.", _ROUTE)
        self.reasoning_tokens = _Counter("sluicegate_reasoning_tokens", "Output tokens spent reasoning.", _ROUTE)
        self.cost = _Counter("sluicegate_cost_usd", "Cost in US dollars.", _ROUTE)
        self.cache = _Counter("sluicegate_cache_requests", "Response cache outcomes.", ("alias", "result"))
        self.attempts = _Counter(
            "sluicegate_upstream_attempts", "Calls to providers, by outcome.", ("deployment", "status")
        )
        self.attempt_duration = _Histogram(
            "sluicegate_upstream_attempt_duration_seconds",
            "Time of one call to a provider (streams: until the stream ended or failed).",
            ("deployment",),
            _DURATION_BUCKETS,
        )
        self.retries = _Counter(
            "sluicegate_retries", "Attempts repeated on the same deployment.", ("alias", "deployment")
        )
        self.fallbacks = _Counter(
            "sluicegate_fallbacks", "Attempts moved on to another deployment.", ("alias", "deployment")
        )
        self.guardrails = _Counter("sluicegate_guardrail_verdicts", "Guardrail outcomes.", ("guardrail", "verdict"))
        self.cancelled = _Counter("sluicegate_streams_cancelled", "Streams the client left early.", _ROUTE)
        self.key_requests = _Counter("sluicegate_key_requests", "Finished requests per key.", ("key", "status"))
        self.key_tokens = _Counter("sluicegate_key_tokens", "Tokens per key.", ("key", "direction"))
        self.key_cost = _Counter("sluicegate_key_cost_usd", "Cost per key in US dollars.", ("key",))
        self._families: list[_Counter | _Histogram] = [
            value for value in vars(self).values() if isinstance(value, _Counter | _Histogram)
        ]
        if not settings.per_key:
            self._families = [f for f in self._families if not f.name.startswith("sluicegate_key_")]
        self.registry.register(self)

    def use_deployments(self, labels: Iterable[str]) -> None:
        """Replace the config-derived deployment labels with the router's own (it may name them)."""
        self._deployment = BoundedLabel(labels)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.family()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- the sink ----------------------------------------------------------------------------------

    def emit(self, record: RequestRecord) -> None:
        alias = self._alias(record.alias)
        route = (alias, self._provider(record.provider))
        status = str(record.status)
        self.requests.inc((*route, status))
        if record.status >= 400:
            self.errors.inc((*route, self._error(record.error_code)))
        self.duration.observe(route, record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft.observe(route, record.ttft_ms / 1000)
        usage = record.usage
        if usage is not None:
            self.tokens.inc((*route, "input"), usage.prompt_tokens)
            self.tokens.inc((*route, "output"), usage.completion_tokens)
            if usage.cached_tokens:
                self.cached_tokens.inc(route, usage.cached_tokens)
            if usage.reasoning_tokens:
                self.reasoning_tokens.inc(route, usage.reasoning_tokens)
        if record.cost_usd:
            self.cost.inc(route, record.cost_usd)
        if record.cache is not None:
            self.cache.inc((alias, record.cache))
        if record.attempts:
            self._count_attempts(alias, record)
        for name, verdict in record.guardrails.items():
            self.guardrails.inc((self._guardrail(name), self._verdict(verdict)))
        if record.cancelled:
            self.cancelled.inc(route)
        if self._key is not None:
            self._count_key(record, status)

    def _count_attempts(self, alias: str, record: RequestRecord) -> None:
        previous: str | None = None
        for attempt in record.attempts:
            deployment = self._deployment(attempt.deployment)
            self.attempts.inc((deployment, str(attempt.status) if attempt.status is not None else NONE))
            if attempt.latency_ms is not None:
                self.attempt_duration.observe((deployment,), attempt.latency_ms / 1000)
            if previous is not None:
                moved = self.retries if attempt.deployment == previous else self.fallbacks
                moved.inc((alias, deployment))
            previous = attempt.deployment

    def _count_key(self, record: RequestRecord, status: str) -> None:
        assert self._key is not None
        key = self._key(record.key_id)
        self.key_requests.inc((key, status))
        if record.usage is not None:
            self.key_tokens.inc((key, "input"), record.usage.prompt_tokens)
            self.key_tokens.inc((key, "output"), record.usage.completion_tokens)
        if record.cost_usd:
            self.key_cost.inc((key,), record.cost_usd)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class CircuitCollector:
    """`sluicegate_circuit_state{deployment}` read from the router at scrape time."""

    def __init__(self, states: Callable[[], dict[str, str]]) -> None:
        self._states = states

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sluicegate_circuit_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            labels=["deployment"],
        )
        for deployment, state in sorted(self._states().items()):
            family.add_metric([deployment], CIRCUIT_STATES.get(state, 0))
        yield family


class QueueCollector:
    """Depth and losses of the background writers (log store, callbacks, request log)."""

    def __init__(self, queues: Callable[[], Iterable[Any]]) -> None:
        self._queues = queues

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "sluicegate_observability_queue_depth", "Records waiting for a background writer.", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "sluicegate_observability_dropped", "Records a background writer dropped (queue full).", labels=["sink"]
        )
        written = CounterMetricFamily(
            "sluicegate_observability_written", "Records a background writer delivered.", labels=["sink"]
        )
        for queue in self._queues():
            depth.add_metric([queue.name], len(queue))
            dropped.add_metric([queue.name], queue.dropped)
            written.add_metric([queue.name], queue.written)
        yield depth
        yield dropped
        yield written
