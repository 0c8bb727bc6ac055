"""The request lifecycle, shared by the HTTP server and the library.

    authenticate -> validate -> admit (limits, budgets) -> input guardrails -> cache lookup
      -> route (attempts, failover) -> provider adapter -> output guardrails -> cache store
      -> record (metrics, spend, logs: off the hot path) -> answer

Nothing here knows HTTP, and nothing here knows a provider's wire format. Each step is one call into
the module that owns the concern.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

from sluicegate.cache.service import ResponseCache
from sluicegate.config import Config, load_config
from sluicegate.context import AttemptRecord, RequestContext, RequestRecord
from sluicegate.errors import GatewayError, UpstreamError
from sluicegate.governance.admission import Admission, Ticket
from sluicegate.governance.auth import Authenticator
from sluicegate.guardrails.pipeline import GuardrailPipeline
from sluicegate.observability.recorder import Recorder
from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider
from sluicegate.providers.registry import build_provider
from sluicegate.requests import validate_chat, validate_embeddings
from sluicegate.routing.router import Attempt, Deployment, Router, provider_timeouts
from sluicegate.streaming.chunks import StreamUsage, finish_stream
from sluicegate.streaming.replay import completion_to_chunks

__all__ = ["ChatAnswer", "EmbeddingsAnswer", "Gateway", "RequestContext", "StreamAnswer"]


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
    tally: StreamUsage


@dataclass(slots=True)
class EmbeddingsAnswer:
    result: EmbeddingsResult
    deployment: Deployment
    attempts: list[Attempt]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {
            name: build_provider(name, provider) for name, provider in config.providers.items()
        }
        self.router = Router(self._aliases(config), self.providers)
        self.auth = Authenticator(config)
        self.admission = Admission(config)
        self.guardrails = GuardrailPipeline(config)
        self.cache = ResponseCache(config)
        self.recorder = Recorder(config)
        self._started = False
        #: false while draining: readiness probes fail so load balancers stop sending
        self.ready = True

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> Gateway:
        return cls(load_config(path))

    def _aliases(self, config: Config) -> dict[str, list[Deployment]]:
        aliases = {}
        for model in config.models:
            aliases[model.name] = [
                Deployment(self.providers[d.provider], d.model, provider_timeouts(self.providers[d.provider]))
                for d in model.deployments
            ]
        return aliases

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

    async def aclose(self) -> None:
        for part in (self.recorder, self.cache, self.admission, self.auth):
            await part.aclose()
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
                cached = await self.cache.lookup(request, ctx)
                if cached is not None:
                    record.usage = cached.usage
                    return ChatAnswer(cached, None, [])

                async def attempt(deployment: Deployment) -> ChatResult:
                    return await deployment.provider.chat(_call(request, deployment, ctx))

                routed = await self.router.route(request["model"], attempt)
                _note_route(record, routed.deployment, routed.attempts)
                result = await self.guardrails.check_output(request, routed.value, ctx)
                record.usage = result.usage
                await self.cache.store(request, result, ctx)
                return ChatAnswer(result, routed.deployment, routed.attempts)
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
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            tally = StreamUsage()
            cached = await self.cache.lookup(request, ctx)
            if cached is not None:
                source: AsyncIterator[bytes] = _iterate(completion_to_chunks(cached.body))
                deployment, attempts = None, []
            else:
                routed = await self.router.route(request["model"], lambda d: _open_stream(request, d, ctx))
                _note_route(record, routed.deployment, routed.attempts)
                first, rest = routed.value
                record.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                source = _prepend(first, rest)
                deployment, attempts = routed.deployment, routed.attempts
            chunks = finish_stream(source, include_usage, tally)
            chunks = self.guardrails.check_stream(request, chunks, ctx)
        except BaseException as error:
            if isinstance(error, GatewayError):
                _note_error(record, error)
            await ticket.__aexit__(type(error), error, None)
            self._finish(record, ctx)
            raise
        return StreamAnswer(self._close_stream(chunks, tally, record, ticket, ctx), deployment, attempts, tally)

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
        record = ctx.begin("embeddings", request["model"], stream=False)
        try:
            async with self.admission.admit(ctx, request):

                async def attempt(deployment: Deployment) -> EmbeddingsResult:
                    return await deployment.provider.embeddings(_call(request, deployment, ctx))

                routed = await self.router.route(request["model"], attempt)
                _note_route(record, routed.deployment, routed.attempts)
                record.usage = routed.value.usage
                return EmbeddingsAnswer(routed.value, routed.deployment, routed.attempts)
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
        self.recorder.emit(record)


def _call(request: dict[str, Any], deployment: Deployment, ctx: RequestContext) -> Call:
    return Call(request, deployment.model, deployment.timeouts, ctx.forward_headers)


async def _open_stream(
    request: dict[str, Any], deployment: Deployment, ctx: RequestContext
) -> tuple[bytes, AsyncIterator[bytes]]:
    chunks = deployment.provider.stream_chat(_call(request, deployment, ctx))
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        raise UpstreamError("the provider's stream was empty", code="upstream_empty_stream") from None
    except BaseException:
        await _close(chunks)
        raise
    return first, chunks


def _note_route(record: RequestRecord, deployment: Deployment, attempts: list[Attempt]) -> None:
    record.deployment = deployment.label
    record.provider = deployment.provider.name
    record.attempts = [AttemptRecord(a.deployment, a.status, a.error) for a in attempts]
    record.attempts.append(AttemptRecord(deployment.label, 200))


def _note_error(record: RequestRecord, error: GatewayError) -> None:
    record.status = error.status
    record.error_code = error.code


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await _close(rest)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
