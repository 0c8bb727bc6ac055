"""The request lifecycle, shared by the HTTP server and the library.

    authenticate -> validate -> route (attempts, failover) -> provider adapter -> usage -> answer

Nothing here knows HTTP, and nothing here knows a provider's wire format.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from sluicegate.config import Config, load_config
from sluicegate.errors import AuthenticationError, UpstreamError
from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider
from sluicegate.providers.registry import build_provider
from sluicegate.requests import validate_chat, validate_embeddings
from sluicegate.routing.router import Attempt, Deployment, Router, provider_timeouts
from sluicegate.streaming.chunks import StreamUsage, finish_stream


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    #: the bearer token the client sent, if any
    api_key: str | None = None
    #: set once the key was checked; in-process library calls start out trusted
    authenticated: bool = False
    #: headers to forward to the provider (request id, trace context)
    forward_headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class ChatAnswer:
    result: ChatResult
    deployment: Deployment
    attempts: list[Attempt]


@dataclass(slots=True)
class StreamAnswer:
    """A stream that has produced its first chunk; `chunks` yields OpenAI chunk JSON documents."""

    chunks: AsyncIterator[bytes]
    deployment: Deployment
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
        self._master_key = config.master_key.encode() if config.master_key else None

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
        return self._master_key is None

    def authenticate(self, ctx: RequestContext) -> None:
        if ctx.authenticated or self._master_key is None:
            return
        if not ctx.api_key:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        if not hmac.compare_digest(ctx.api_key.encode(), self._master_key):
            raise AuthenticationError("Invalid API key")
        ctx.authenticated = True

    async def chat(self, request: dict[str, Any], ctx: RequestContext) -> ChatAnswer:
        self.authenticate(ctx)
        validate_chat(request)

        async def attempt(deployment: Deployment) -> ChatResult:
            return await deployment.provider.chat(self._call(request, deployment, ctx))

        routed = await self.router.route(request["model"], attempt)
        return ChatAnswer(routed.value, routed.deployment, routed.attempts)

    async def stream_chat(self, request: dict[str, Any], ctx: RequestContext) -> StreamAnswer:
        """Open a stream. Failover happens until the first chunk; after that the stream is committed."""
        self.authenticate(ctx)
        validate_chat(request)

        async def attempt(deployment: Deployment) -> tuple[bytes, AsyncIterator[bytes]]:
            chunks = deployment.provider.stream_chat(self._call(request, deployment, ctx))
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                raise UpstreamError("the provider's stream was empty", code="upstream_empty_stream") from None
            except BaseException:
                await _close(chunks)
                raise
            return first, chunks

        routed = await self.router.route(request["model"], attempt)
        first, rest = routed.value
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        tally = StreamUsage()
        chunks = finish_stream(_prepend(first, rest), include_usage, tally)
        return StreamAnswer(chunks, routed.deployment, routed.attempts, tally)

    async def embeddings(self, request: dict[str, Any], ctx: RequestContext) -> EmbeddingsAnswer:
        self.authenticate(ctx)
        validate_embeddings(request)

        async def attempt(deployment: Deployment) -> EmbeddingsResult:
            return await deployment.provider.embeddings(self._call(request, deployment, ctx))

        routed = await self.router.route(request["model"], attempt)
        return EmbeddingsAnswer(routed.value, routed.deployment, routed.attempts)

    def list_models(self) -> dict[str, Any]:
        created = 0
        return {
            "object": "list",
            "data": [
                {"id": alias, "object": "model", "created": created, "owned_by": "sluicegate"}
                for alias in self.router.aliases
            ],
        }

    @staticmethod
    def _call(request: dict[str, Any], deployment: Deployment, ctx: RequestContext) -> Call:
        return Call(request, deployment.model, deployment.timeouts, ctx.forward_headers)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


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
