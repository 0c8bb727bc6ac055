"""The provider contract.

A provider adapter is a thin orchestrator: convert the OpenAI-shaped request with its pure converters,
send it with the shared HTTP client, map errors, convert the answer back. Everything provider-specific
lives in the provider's folder; nothing here knows about keys, caches or budgets.

The internal model is the OpenAI chat-completions wire format (plain dicts, validated once at the edge).
OpenAI-compatible upstreams therefore pass through untouched, and every other provider converts to and
from that one shape instead of N x M converters between dialects.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from sluicegate.errors import InvalidRequestError, UpstreamError

if TYPE_CHECKING:
    from sluicegate.config import ProviderConfig
    from sluicegate.providers.http import HttpClient


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: prompt tokens served from the provider's prompt cache (OpenAI cached_tokens, Anthropic cache reads)
    cached_tokens: int = 0
    #: prompt tokens written to the provider's prompt cache (Anthropic cache_creation_input_tokens)
    cache_creation_tokens: int = 0
    #: completion tokens spent on reasoning / thinking (already included in completion_tokens)
    reasoning_tokens: int = 0

    def to_openai(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens or self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens or self.cache_creation_tokens:
            details: dict[str, int] = {"cached_tokens": self.cached_tokens}
            if self.cache_creation_tokens:
                details["cache_creation_tokens"] = self.cache_creation_tokens
            usage["prompt_tokens_details"] = details
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


class _TokenDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None


class _OpenAIUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _TokenDetails | None = None
    completion_tokens_details: _TokenDetails | None = None


class _UsageOnly(msgspec.Struct):
    usage: _OpenAIUsage | None = None


_usage_decoder = msgspec.json.Decoder(_UsageOnly)


def usage_from_openai_json(body: bytes) -> Usage | None:
    """Read only `usage` out of an OpenAI-shaped JSON document, skipping the rest without building it."""
    try:
        raw = _usage_decoder.decode(body).usage
    except msgspec.DecodeError:
        return None
    if raw is None:
        return None
    prompt = raw.prompt_tokens or 0
    completion = raw.completion_tokens or 0
    usage = Usage(prompt, completion, raw.total_tokens or prompt + completion)
    if raw.prompt_tokens_details is not None:
        usage.cached_tokens = raw.prompt_tokens_details.cached_tokens or 0
        usage.cache_creation_tokens = raw.prompt_tokens_details.cache_creation_tokens or 0
    if raw.completion_tokens_details is not None:
        usage.reasoning_tokens = raw.completion_tokens_details.reasoning_tokens or 0
    return usage


def new_completion_id() -> str:
    """An id for an answer the provider gave none OpenAI-shaped (Gemini, Bedrock, Vertex)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def decode_upstream_object(body: bytes, what: str = "response") -> dict[str, Any]:
    """A provider's JSON object; anything else (garbage, a list, a bare string) fails the attempt."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(f"the provider sent a malformed {what}", code="upstream_malformed_response")
    return data


@dataclass(slots=True)
class Timeouts:
    """Seconds. `first_token` bounds the wait for response headers / the first stream event."""

    connect: float = 10.0
    first_token: float = 300.0
    total: float = 600.0


@dataclass(slots=True)
class Call:
    """One attempt at one deployment.

    `request` is the validated OpenAI-shaped request; adapters must not mutate it (a failed attempt is
    retried elsewhere with the same dict).
    """

    request: dict[str, Any]
    model: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: headers forwarded to the provider (request id, trace context)
    forward_headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderResult:
    """A complete answer in the OpenAI wire format (`body`), with the usage it was charged."""

    body: bytes
    usage: Usage

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = msgspec.json.decode(self.body)
        return result


class ChatResult(ProviderResult):
    """`body` is an OpenAI `chat.completion` JSON document."""

    __slots__ = ()


class EmbeddingsResult(ProviderResult):
    """`body` is an OpenAI embeddings `list` JSON document."""

    __slots__ = ()


class RerankResult(ProviderResult):
    """`body` is a rerank answer: `{"id", "model", "results": [{"index", "relevance_score"}], "usage"}`."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A named host from `catalog.toml`: which adapter speaks its format, and its defaults and quirks."""

    name: str
    adapter: str
    base_url: str | None = None
    key_env: str | None = None
    #: request fields the host rejects; removed before sending
    drop_params: tuple[str, ...] = ()
    #: request fields the host names differently: (ours, theirs)
    rename_params: tuple[tuple[str, str], ...] = ()
    no_auth: bool = False


class Provider(ABC):
    """Base class of every provider adapter.

    Subclasses set `type_name` (the `type:` users write in the config) and implement `chat` and
    `stream_chat`; `embeddings` is optional. `stream_chat` is an async generator of OpenAI
    `chat.completion.chunk` JSON documents (bytes, no SSE framing). Its last chunk carries the usage:
    `{"choices": [], "usage": {...}}` exactly as OpenAI sends it with `include_usage`. Errors before
    the first chunk are raised from the first `__anext__`, so the router can still fail over.
    """

    type_name: ClassVar[str]

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient, entry: CatalogEntry) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.entry = entry

    @abstractmethod
    async def chat(self, call: Call) -> ChatResult: ...

    @abstractmethod
    def stream_chat(self, call: Call) -> AsyncIterator[bytes]: ...

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        raise InvalidRequestError(
            f"provider '{self.name}' ({self.type_name}) does not offer embeddings", code="unsupported_capability"
        )

    async def rerank(self, call: Call) -> RerankResult:
        raise InvalidRequestError(
            f"provider '{self.name}' ({self.type_name}) does not offer rerank", code="unsupported_capability"
        )

    async def aclose(self) -> None:
        await self.http.aclose()
