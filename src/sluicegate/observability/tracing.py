"""OpenTelemetry traces (the `otel` extra): a span per request, per upstream attempt, cache step and guardrail.

Tracing instruments a built gateway from the outside, the way OpenTelemetry's instrumentation libraries do:
`instrument` wraps the gateway's entry points, its cache and guardrail steps and each provider's calls on the
instances. The lifecycle code stays free of tracing calls, and when tracing is off nothing is wrapped, so
it costs nothing. The client's W3C `traceparent` (forwarded by the server in `ctx.forward_headers`) becomes
the request span's parent; each upstream attempt is a child span whose own `traceparent` goes to the provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from sluicegate.config import ConfigError
from sluicegate.context import RequestContext, RequestRecord
from sluicegate.errors import GatewayError
from sluicegate.observability.config import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from sluicegate.gateway import Gateway
    from sluicegate.providers.base import Call, Provider

log = logging.getLogger("sluicegate.observability")


class Tracing:
    """Owns the tracer provider and its exporter; `instrument` hooks a gateway into it."""

    def __init__(self, settings: TracingConfig) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError(
                "observability.tracing: OpenTelemetry is not installed: pip install 'sluicegate[otel]'"
            ) from None
        self.settings = settings
        # A provider of our own, not the process-wide one: an application embedding the library keeps its own.
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        self._add_exporter(settings)
        self.tracer: Tracer = self.provider.get_tracer("sluicegate")
        self.propagator = TraceContextTextMapPropagator()

    def _add_exporter(self, settings: TracingConfig) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if settings.exporter == "none":
            return
        if settings.exporter == "console":
            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers) or None)
        # Spans are exported in batches from the processor's own thread: never on the request's path.
        self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def instrument(self, gateway: Gateway) -> None:
        _wrap(gateway, "chat", lambda original: self._traced_request(original, "chat"))
        _wrap(gateway, "embeddings", lambda original: self._traced_request(original, "embeddings"))
        _wrap(gateway, "stream_chat", lambda original: self._traced_stream_request(original))
        _wrap(gateway.cache, "lookup", lambda original: self._step("cache.lookup", original, _cache_on(gateway)))
        _wrap(gateway.cache, "store", lambda original: self._step("cache.store", original, _cache_on(gateway)))
        guarded = _guardrails_on(gateway)
        _wrap(gateway.guardrails, "check_input", lambda original: self._step("guardrails.input", original, guarded))
        _wrap(gateway.guardrails, "check_output", lambda original: self._step("guardrails.output", original, guarded))
        for provider in gateway.providers.values():
            self.instrument_provider(provider)

    def instrument_provider(self, provider: Provider) -> None:
        _wrap(provider, "chat", lambda original: self._traced_attempt(provider, "chat", original))
        _wrap(provider, "embeddings", lambda original: self._traced_attempt(provider, "embeddings", original))
        _wrap(provider, "stream_chat", lambda original: self._traced_stream_attempt(provider, original))

    async def aclose(self) -> None:
        # Shutting the provider down flushes the exporter, which does network I/O: keep it off the loop.
        await asyncio.to_thread(self.provider.shutdown)

    # --- the request span ----------------------------------------------------------------------------

    def _start_request(self, ctx: RequestContext, operation: str, request: dict[str, Any]) -> tuple[Span, Any]:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        parent = None
        incoming = ctx.forward_headers.get("traceparent")
        if incoming:
            parent = self.propagator.extract({"traceparent": incoming})
        alias = str(request.get("model", "")) if isinstance(request, dict) else ""
        span = self.tracer.start_span(
            f"sluicegate {operation} {alias}".strip(),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": alias,
                "sluicegate.request_id": ctx.request_id,
            },
        )
        return span, trace.set_span_in_context(span, parent)

    def _traced_request(self, original: Callable[..., Any], operation: str) -> Callable[..., Any]:
        from opentelemetry import context as otel_context

        @functools.wraps(original)
        async def traced(request: dict[str, Any], ctx: RequestContext) -> Any:
            span, span_context = self._start_request(ctx, operation, request)
            token = otel_context.attach(span_context)
            try:
                return await original(request, ctx)
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                otel_context.detach(token)
                _finish_request(span, ctx.record)

        return traced

    def _traced_stream_request(self, original: Callable[..., Any]) -> Callable[..., Any]:
        from opentelemetry import context as otel_context

        @functools.wraps(original)
        async def traced(request: dict[str, Any], ctx: RequestContext) -> Any:
            span, span_context = self._start_request(ctx, "chat", request)
            token = otel_context.attach(span_context)
            try:
                answer = await original(request, ctx)
            except BaseException as exc:
                _fail(span, exc)
                _finish_request(span, ctx.record)
                raise
            finally:
                otel_context.detach(token)
            answer.chunks = _end_with_stream(answer.chunks, span, ctx)
            return answer

        return traced

    # --- cache and guardrail steps -------------------------------------------------------------------

    def _step(
        self, name: str, original: Callable[..., Any], enabled: Callable[[RequestContext], bool]
    ) -> Callable[..., Any]:
        @functools.wraps(original)
        async def traced(*args: Any) -> Any:
            ctx = args[-1]
            if not isinstance(ctx, RequestContext) or not enabled(ctx):
                return await original(*args)
            with self.tracer.start_as_current_span(f"sluicegate.{name}") as span:
                try:
                    result = await original(*args)
                except GatewayError as exc:
                    _fail(span, exc)
                    raise
                record = ctx.record
                if record is not None:
                    if name.startswith("cache") and record.cache:
                        span.set_attribute("sluicegate.cache.result", record.cache)
                    for guardrail, verdict in record.guardrails.items():
                        span.set_attribute(f"sluicegate.guardrail.{guardrail}", verdict)
                return result

        return traced

    # --- upstream attempts ---------------------------------------------------------------------------

    def _start_attempt(self, provider: Provider, operation: str, call: Call) -> tuple[Span, Call]:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        span = self.tracer.start_span(
            f"{operation} {call.model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": getattr(provider, "type_name", provider.name),
                "gen_ai.request.model": call.model,
                "sluicegate.deployment": f"{provider.name}/{call.model}",
            },
        )
        headers = dict(call.forward_headers)
        headers.pop("tracestate", None)
        self.propagator.inject(headers, context=trace.set_span_in_context(span))
        return span, dataclasses.replace(call, forward_headers=headers)

    def _traced_attempt(self, provider: Provider, operation: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def traced(call: Call) -> Any:
            span, call = self._start_attempt(provider, operation, call)
            try:
                result = await original(call)
                _set_usage(span, getattr(result, "usage", None))
                return result
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                span.end()

        return traced

    def _traced_stream_attempt(self, provider: Provider, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def traced(call: Call) -> AsyncIterator[bytes]:
            span, call = self._start_attempt(provider, "chat", call)
            chunks = original(call)
            try:
                async for chunk in chunks:
                    yield chunk
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                await _close(chunks)
                span.end()

        return traced


async def _end_with_stream(chunks: AsyncIterator[bytes], span: Span, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Keep the request span open until the stream ends, however it ends."""
    try:
        async for chunk in chunks:
            yield chunk
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            _fail(span, exc)
        raise
    finally:
        await _close(chunks)
        _finish_request(span, ctx.record)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _finish_request(span: Span, record: RequestRecord | None) -> None:
    if record is not None:
        attributes: dict[str, Any] = {
            "http.response.status_code": record.status,
            "sluicegate.alias": record.alias,
            "sluicegate.stream": record.stream,
            "sluicegate.attempts": len(record.attempts),
        }
        for name, value in (
            ("sluicegate.deployment", record.deployment),
            ("gen_ai.provider.name", record.provider),
            ("sluicegate.key_id", record.key_id),
            ("sluicegate.cache.result", record.cache),
            ("sluicegate.cost_usd", record.cost_usd),
            ("sluicegate.ttft_ms", record.ttft_ms),
            ("error.type", record.error_code),
        ):
            if value is not None:
                attributes[name] = value
        span.set_attributes(attributes)
        _set_usage(span, record.usage)
        if record.status >= 400:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, record.error_code or str(record.status)))
    span.end()


def _set_usage(span: Span, usage: Any) -> None:
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


def _fail(span: Span, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    if isinstance(exc, GatewayError):
        span.set_attribute("error.type", exc.code or type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, exc.message))
    elif isinstance(exc, Exception):
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _wrap(owner: object, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        log.debug("tracing: %s has no %s to trace", type(owner).__name__, name)
        return
    setattr(owner, name, wrapper(original))


def _cache_on(gateway: Gateway) -> Callable[[RequestContext], bool]:
    enabled_for = getattr(gateway.cache, "enabled_for", None)
    if callable(enabled_for):
        return lambda ctx: bool(enabled_for(ctx, ctx.record.alias if ctx.record else ""))
    # The cache's config contract: on for every alias unless it says `cache: false` when the top-level cache is
    # enabled, otherwise only for aliases that say `cache: true` or give cache settings.
    config = gateway.config
    default = bool(getattr(config.cache, "enabled", False))
    cached = frozenset(m.name for m in config.models if (default if m.cache is None else m.cache is not False))
    return lambda ctx: ctx.record is not None and ctx.record.alias in cached


def _guardrails_on(gateway: Gateway) -> Callable[[RequestContext], bool]:
    enabled_for = getattr(gateway.guardrails, "enabled_for", None)
    if not callable(enabled_for):
        return lambda ctx: True
    return lambda ctx: bool(enabled_for(ctx, ctx.record.alias if ctx.record else ""))
