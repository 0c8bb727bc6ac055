"""The request lifecycle, shared by the HTTP server and the library.

    authenticate -> validate -> admit (limits, budgets) -> input guardrails -> cache lookup
      -> route (attempts, failover) -> provider adapter -> output guardrails -> cache store
      -> record (metrics, spend, logs: off the hot path) -> answer

Nothing here knows HTTP, and nothing here knows a provider's wire format. Each step is one call into
the module that owns the concern.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any, TypeVar

from sluicegate.cache.service import ResponseCache
from sluicegate.config import Config, load_config
from sluicegate.context import RequestContext, RequestRecord
from sluicegate.errors import GatewayError
from sluicegate.governance.admission import Admission, Ticket
from sluicegate.governance.auth import Authenticator
from sluicegate.guardrails.pipeline import GuardrailPipeline
from sluicegate.observability.recorder import Recorder
from sluicegate.providers.base import (
    Call,
    ChatResult,
    EmbeddingsResult,
    Provider,
    ProviderResult,
    RerankResult,
    Timeouts,
)
from sluicegate.providers.registry import build_provider
from sluicegate.requests import validate_chat, validate_embeddings
from sluicegate.routing.health_redis import close_store, start_store
from sluicegate.routing.router import Attempt, Deployment, Routed, Router
from sluicegate.streaming.chunks import StreamUsage, finish_stream
from sluicegate.streaming.replay import completion_to_chunks

R = TypeVar("R", bound=ProviderResult)

__all__ = ["ChatAnswer", "EmbeddingsAnswer", "Gateway", "RequestContext", "RerankAnswer", "StreamAnswer"]


@dataclass(slots=True)
class ChatAnswer:
    result: ChatResult
    #: None when the answer came from the cache
    deployment: Deployment | None
    attempts: list[Attempt]


@dataclass(slots=True)
class StreamAnswer:
    """A stream that has produced its first chunk; `chunks` yields OpenAI chunk JSON documents."""

    chunks: AsyncIterator[bytes]
    deployment: Deployment | None
    attempts: list[Attempt]


@dataclass(slots=True)
class EmbeddingsAnswer:
    result: EmbeddingsResult
    deployment: Deployment
    attempts: list[Attempt]


@dataclass(slots=True)
class RerankAnswer:
    result: RerankResult
    deployment: Deployment
    attempts: list[Attempt]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {
            name: build_provider(name, provider) for name, provider in config.providers.items()
        }
        self.router = Router.from_config(config, self.providers)
        self.auth = Authenticator(config)
        self.admission = Admission(config, self.auth.directory)
        self.guardrails = GuardrailPipeline(config)
        self.cache = ResponseCache(config, self.embeddings)
        self.recorder = Recorder(config)
        for sink in self.admission.sinks():  # spend records to the database
            self.recorder.add(sink)
        self.recorder.attach(self)
        self._started = False
        #: false while draining: readiness probes fail so load balancers stop sending
        self.ready = True

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> Gateway:
        return cls(load_config(path))

    @property
    def is_open(self) -> bool:
        return self.auth.is_open

    async def start(self) -> None:
        """Open pools and start background writers. Called once by the server, lazily by the library."""
        if self._started:
            return
        self._started = True
        for part in (self.auth, self.admission, self.cache, self.recorder):
            await part.start()
        await start_store(self.router.health.store)

    async def aclose(self) -> None:
        for part in (self.recorder, self.cache, self.admission, self.auth):
            await part.aclose()
        await self.guardrails.aclose()
        await close_store(self.router.health.store)
        for provider in self.providers.values():
            await provider.aclose()
        self._started = False

    async def authenticate(self, ctx: RequestContext) -> None:
        await self.auth.authenticate(ctx)

    # --- chat ------------------------------------------------------------------------------------

    async def chat(self, request: dict[str, Any], ctx: RequestContext) -> ChatAnswer:
        await self.auth.authenticate(ctx)
        validate_chat(request)
        record = ctx.begin("chat", request["model"], stream=False)
        try:
            async with self.admission.admit(ctx, request):
                request = await self.guardrails.check_input(request, ctx)
                self.recorder.note_prompt(record, request)
                cached = await self.cache.lookup(request, ctx)
                if cached is not None:
                    record.usage = cached.usage
                    return ChatAnswer(self.guardrails.restore_output(cached, ctx), None, [])

                async def attempt(deployment: Deployment, timeouts: Timeouts) -> ChatResult:
                    return await deployment.provider.chat(_call(request, deployment, timeouts, ctx))

                routed = await self.router.route(request, ctx, attempt)
                _note_route(record, routed.deployment)
                result = await self.guardrails.check_output(request, routed.value, ctx)
                record.usage = result.usage
                await self.cache.store(request, result, ctx)
                # placeholders are restored after the store: the cache never holds one caller's values
                return ChatAnswer(self.guardrails.restore_output(result, ctx), routed.deployment, routed.attempts)
        except GatewayError as error:
            _note_error(record, error)
            raise
        finally:
            self._finish(record, ctx)

    async def stream_chat(self, request: dict[str, Any], ctx: RequestContext) -> StreamAnswer:
        """Open a stream. Failover happens until the first chunk; after that the stream is committed."""
        await self.auth.authenticate(ctx)
        validate_chat(request)
        record = ctx.begin("chat", request["model"], stream=True)
        ticket = self.admission.admit(ctx, request)
        try:
            await ticket.__aenter__()
        except GatewayError as error:
            _note_error(record, error)
            self._finish(record, ctx)
            raise
        try:
            request = await self.guardrails.check_input(request, ctx)
            self.recorder.note_prompt(record, request)
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            tally = ticket.tally()
            cached = await self.cache.lookup(request, ctx)
            if cached is not None:
                source: AsyncIterator[bytes] = _iterate(completion_to_chunks(cached.body))
                deployment, attempts = None, []
            else:
                routed = await self.router.route_stream(
                    request, ctx, lambda d, timeouts: d.provider.stream_chat(_call(request, d, timeouts, ctx))
                )
                _note_route(record, routed.deployment)
                record.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                source = routed.value
                deployment, attempts = routed.deployment, routed.attempts
            chunks = finish_stream(source, include_usage, tally)
            # the cache keeps the stream as it was before guardrails restore a caller's placeholders
            chunks = self.cache.capture(request, chunks, tally, ctx)
            chunks = self.guardrails.check_stream(request, chunks, ctx)
        except BaseException as error:
            if isinstance(error, GatewayError):
                _note_error(record, error)
            await ticket.__aexit__(type(error), error, None)
            self._finish(record, ctx)
            raise
        return StreamAnswer(self._close_stream(chunks, tally, record, ticket, ctx), deployment, attempts)

    async def _close_stream(
        self,
        chunks: AsyncIterator[bytes],
        tally: StreamUsage,
        record: RequestRecord,
        ticket: Ticket,
        ctx: RequestContext,
    ) -> AsyncIterator[bytes]:
        """Pass the stream through; whatever way it ends, release the ticket and record it exactly once."""
        completed = False
        error: BaseException | None = None
        try:
            async for chunk in chunks:
                yield chunk
            if ctx.cache_state is not None:
                await self.cache.stream_ended(ctx)
            completed = True
        except GatewayError as exc:
            _note_error(record, exc)
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            await _close(chunks)
            record.usage = tally.usage
            record.cancelled = (not completed and error is None) or isinstance(error, GeneratorExit)
            await ticket.__aexit__(type(error) if error else None, error, None)
            self._finish(record, ctx)

    # --- embeddings ------------------------------------------------------------------------------

    async def embeddings(self, request: dict[str, Any], ctx: RequestContext) -> EmbeddingsAnswer:
        await self.auth.authenticate(ctx)
        validate_embeddings(request)
        routed = await self._unary("embeddings", request, ctx, lambda provider: provider.embeddings)
        return EmbeddingsAnswer(routed.value, routed.deployment, routed.attempts)

    # --- rerank ----------------------------------------------------------------------------------

    async def rerank(self, request: dict[str, Any], ctx: RequestContext) -> RerankAnswer:
        """`request` was validated at the edge (server/routes/rerank.py): model, query, documents."""
        await self.auth.authenticate(ctx)
        routed = await self._unary("rerank", request, ctx, lambda provider: provider.rerank)
        return RerankAnswer(routed.value, routed.deployment, routed.attempts)

    async def _unary(
        self,
        endpoint: str,
        request: dict[str, Any],
        ctx: RequestContext,
        capability: Callable[[Provider], Callable[[Call], Awaitable[R]]],
    ) -> Routed[R]:
        """The lifecycle of a request with one answer and no cache or guardrail step (embeddings, rerank)."""
        record = ctx.begin(endpoint, request["model"], stream=False)
        self.recorder.note_prompt(record, request)
        try:
            async with self.admission.admit(ctx, request):

                async def attempt(deployment: Deployment, timeouts: Timeouts) -> R:
                    return await capability(deployment.provider)(_call(request, deployment, timeouts, ctx))

                routed: Routed[R] = await self.router.route(request, ctx, attempt)
                _note_route(record, routed.deployment)
                record.usage = routed.value.usage
                return routed
        except GatewayError as error:
            _note_error(record, error)
            raise
        finally:
            self._finish(record, ctx)

    def list_models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": alias, "object": "model", "created": 0, "owned_by": "sluicegate"}
                for alias in self.router.aliases
            ],
        }

    def _finish(self, record: RequestRecord, ctx: RequestContext) -> None:
        record.latency_ms = (time.perf_counter() - ctx.started) * 1000
        if ctx.cache_state is not None:
            self.cache.settle(ctx)
        self.recorder.emit(record)


def _call(request: dict[str, Any], deployment: Deployment, timeouts: Timeouts, ctx: RequestContext) -> Call:
    return Call(request, deployment.model, timeouts, ctx.forward_headers)


def _note_route(record: RequestRecord, deployment: Deployment) -> None:
    record.deployment = deployment.label
    record.provider = deployment.provider.name
    # record.attempts (every attempt, with its status, error and latency) is filled by the router


def _note_error(record: RequestRecord, error: GatewayError) -> None:
    record.status = error.status
    record.error_code = error.code


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
