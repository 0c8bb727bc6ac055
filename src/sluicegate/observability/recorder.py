"""Hands each finished request's record to the sinks that want it (metrics, spend, logs, callbacks).

`emit` is called on the hot path and must stay cheap and non-blocking: sinks that write to a database or
the network queue the record and flush in the background.

The observability sinks are built here from `observability:` in the config; other concerns (spend) add
their own with `add`. `attach` is called once the gateway is built, for what needs to see all of it
(traces wrap its steps; metrics read the router's deployments and circuit states).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from sluicegate.config import Config, ConfigError
from sluicegate.context import RequestRecord
from sluicegate.observability.callbacks import KINDS, HttpCallback, build_callback
from sluicegate.observability.config import ObservabilityConfig
from sluicegate.observability.logs import RequestLogSink
from sluicegate.observability.logstore import LogStore, resolve_url
from sluicegate.observability.metrics import CircuitCollector, MetricsSink, QueueCollector
from sluicegate.observability.queue import BatchQueue

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway
    from sluicegate.observability.tracing import Tracing

log = logging.getLogger("sluicegate.recorder")


class Sink(Protocol):
    def emit(self, record: RequestRecord) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Recorder:
    def __init__(self, config: Config, sinks: list[Sink] | None = None) -> None:
        self.config = config
        settings = config.observability
        validate(settings)
        self.sinks: list[Sink] = list(sinks or [])
        self.log_prompts = settings.log_prompts
        self.metrics: MetricsSink | None = None
        self.log_store: LogStore | None = None
        self.callbacks: list[HttpCallback] = []
        self.tracing: Tracing | None = None
        if settings.metrics.enabled:
            self.metrics = MetricsSink(config, settings.metrics)
            self.metrics.add_collector(QueueCollector(self.queues))
            self.sinks.append(self.metrics)
        if settings.log_requests:
            self.sinks.append(RequestLogSink(include_prompts=settings.log_prompts))
        url = resolve_url(settings.log_store, config.database_url)
        if url is not None:
            self.log_store = LogStore(url, settings.log_store, include_prompts=settings.log_prompts)
            self.sinks.append(self.log_store)
        for index, callback in enumerate(settings.callbacks):
            sink = build_callback(callback, index)
            self.callbacks.append(sink)
            self.sinks.append(sink)
        if settings.tracing.enabled:
            from sluicegate.observability.tracing import Tracing

            self.tracing = Tracing(settings.tracing)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def attach(self, gateway: Gateway) -> None:
        """Hook into the built gateway: tracing wraps its steps, metrics learn the router's deployments."""
        if self.tracing is not None:
            self.tracing.instrument(gateway)
        if self.metrics is not None:
            labels = _deployment_labels(gateway)
            if labels:
                self.metrics.use_deployments(labels)
            states = _circuit_states(gateway, frozenset(labels))
            if states is not None:
                self.metrics.add_collector(CircuitCollector(states))

    def note_prompt(self, record: RequestRecord, request: dict[str, Any]) -> None:
        """Keep the prompt on the record, only when prompt logging is on."""
        if self.log_prompts:
            record.prompt = request.get("messages", request.get("input"))

    def queues(self) -> Iterator[BatchQueue[Any]]:
        for sink in self.sinks:
            queue = getattr(sink, "queue", None)
            if isinstance(queue, BatchQueue):
                yield queue

    def emit(self, record: RequestRecord) -> None:
        for sink in self.sinks:
            try:
                sink.emit(record)
            except Exception:
                # A broken sink must never fail the request it is reporting on.
                log.exception("sink %s failed to take record %s", type(sink).__name__, record.request_id)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def aclose(self) -> None:
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("sink %s failed to close", type(sink).__name__)
        if self.tracing is not None:
            await self.tracing.aclose()


def _deployment_labels(gateway: Gateway) -> list[str]:
    labels: list[str] = []
    router = gateway.router
    for alias in router.aliases:
        try:
            labels.extend(deployment.label for deployment in router.candidates(alias))
        except Exception:  # the router may refuse an alias it cannot serve; metrics then say `other`
            continue
    return labels


def _circuit_states(gateway: Gateway, labels: frozenset[str]) -> Callable[[], dict[str, str]] | None:
    """Read breaker states from the router's health at scrape time (configured deployments only)."""
    router = gateway.router
    deployments = getattr(router, "deployments", None)
    snapshot = getattr(getattr(router, "health", None), "snapshot", None)
    if not callable(deployments) or not callable(snapshot):
        return None

    def states() -> dict[str, str]:
        return {d.label: str(snapshot(d)["state"]) for d, _ in deployments() if d.label in labels}

    return states


def validate(settings: ObservabilityConfig) -> None:
    """Check what the schema cannot: choices and ranges, phrased with the path in the config file."""
    where = "observability"
    for index, callback in enumerate(settings.callbacks):
        path = f"{where}.callbacks[{index}]"
        if callback.type not in KINDS:
            raise ConfigError(f"at {path}.type: unknown callback type '{callback.type}' (expected webhook or langfuse)")
        if callback.type == "langfuse" and not (callback.public_key and callback.secret_key):
            raise ConfigError(f"at {path}: a langfuse callback needs public_key and secret_key")
        if not callback.url.startswith(("http://", "https://")):
            raise ConfigError(f"at {path}.url: expected an http:// or https:// URL")
        _positive(f"{path}.batch_size", callback.batch_size)
        _positive(f"{path}.max_queue", callback.max_queue)
    tracing = settings.tracing
    if tracing.exporter not in ("otlp", "console", "none"):
        raise ConfigError(f"at {where}.tracing.exporter: expected otlp, console or none, got '{tracing.exporter}'")
    if not 0.0 <= tracing.sample_ratio <= 1.0:
        raise ConfigError(f"at {where}.tracing.sample_ratio: expected a number from 0 to 1")
    store = settings.log_store
    for name in ("retention_days", "rollup_retention_days", "batch_size", "max_queue", "flush_interval"):
        _positive(f"{where}.log_store.{name}", getattr(store, name))
    _positive(f"{where}.metrics.max_keys", settings.metrics.max_keys)


def _positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"at {path}: expected a positive number, got {value}")
