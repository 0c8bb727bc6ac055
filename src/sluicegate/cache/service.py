"""The response cache as the lifecycle sees it: look up before routing, store after success.

    lookup  -> idempotent replay? exact hit? semantic hit? (else remember what to store)
    store   -> finish the idempotency claim, keep the answer, index the prompt
    capture -> the same for a stream, once it has ended well
    settle  -> a request that ends without storing frees its idempotency key

Which aliases cache, and how, is worked out once at start-up: for an alias without caching (and a request
without an `Idempotency-Key`) `lookup` is one dict lookup, and nothing else here runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sluicegate.cache.config import AliasCacheConfig, AliasSemanticConfig, CacheConfig, SemanticConfig
from sluicegate.cache.idempotency import Claim, Idempotency, build_store
from sluicegate.cache.keys import context_key, fingerprint, prompt_text, request_key
from sluicegate.config import Config, ConfigError
from sluicegate.context import RequestContext
from sluicegate.errors import ConfigurationError, InvalidRequestError
from sluicegate.providers.base import ChatResult, Usage, usage_from_openai_json
from sluicegate.streaming.assemble import chunks_to_completion, is_complete

if TYPE_CHECKING:
    from sluicegate.cache.semantic import Candidate, Prompt, SemanticCache
    from sluicegate.streaming.chunks import StreamUsage

log = logging.getLogger("sluicegate.cache")

HIT, MISS, SEMANTIC_HIT, BYPASS = "hit", "miss", "semantic-hit", "bypass"
#: what `RequestRecord.cache` says when the answer is an idempotent replay: the provider was not called
IDEMPOTENT_REPLAY = "idempotent-replay"
_HEADER = "x-sluicegate-cache"

Embeddings = Callable[[dict[str, Any], RequestContext], Awaitable[Any]]


class Backend(Protocol):
    """What the exact cache stores answers in (memory.MemoryBackend, redis.RedisBackend)."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SemanticPolicy:
    """The semantic settings one alias resolved to at start-up."""

    threshold: float
    learned: bool
    guard: bool
    context: str


@dataclass(frozen=True, slots=True)
class AliasPolicy:
    """The cache settings one alias resolved to at start-up."""

    ttl: float
    namespace: str
    cache_temperature: bool
    per_key: bool
    semantic: SemanticPolicy | None


@dataclass(slots=True)
class CacheState:
    """What `lookup` worked out for one request, for `store` / `capture` / `settle` to reuse."""

    policy: AliasPolicy | None
    #: the exact-cache key, when the answer should be stored
    key: str | None = None
    ttl: float = 0.0
    #: hit | semantic-hit | idempotent-replay: answered without calling the provider
    served: str | None = None
    prompt: Prompt | None = None
    #: learned mode: the entry whose answer this request's fresh answer verifies
    candidate: Candidate | None = None
    candidate_body: bytes | None = None
    claim: Claim | None = None
    #: a stream's chunks as they passed, and whether the provider's stream ran to its end
    captured: list[bytes] | None = None
    stream_finished: bool = False


class ResponseCache:
    def __init__(self, config: Config, embeddings: Embeddings | None = None) -> None:
        self.config = config
        self.settings = config.cache
        self._embeddings = embeddings
        #: every alias, None where it does not cache (so an alias's `cache: false` beats the top-level default)
        self._policies = {model.name: _policy(self.settings, model.cache) for model in config.models}
        #: models addressed as `provider/model` follow the top-level default
        self._default = _policy(self.settings, None)
        self.backend: Backend | None = self._backend() if self.cached_aliases or self._default else None
        self.semantic: SemanticCache | None = None
        self._wants_semantic = any(p and p.semantic for p in self._policies.values()) or bool(
            self._default and self._default.semantic
        )
        if self._wants_semantic:
            _check_model(config)
        idempotency = config.idempotency
        self.idempotency: Idempotency | None = None
        if idempotency.enabled:
            try:
                store = build_store(idempotency, config.redis_url, config.database_url)
            except ValueError as exc:
                raise ConfigError(f"at idempotency: {exc}") from None
            self.idempotency = Idempotency(idempotency, store)
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor: Executor | None = None

    @property
    def cached_aliases(self) -> list[str]:
        return [alias for alias, policy in self._policies.items() if policy is not None]

    # --- the lifecycle's calls ------------------------------------------------------------------

    async def lookup(self, request: dict[str, Any], ctx: RequestContext) -> ChatResult | None:
        policy = self._policies.get(request["model"], self._default)
        header = ctx.control.get("idempotency-key") if self.idempotency is not None else None
        if policy is None and header is None:
            return None
        state = ctx.cache_state = CacheState(policy)
        if header is not None:
            replay = await self._begin_idempotent(header, request, ctx, state)
            if replay is not None:
                return replay
        if policy is None:
            return None
        return await self._lookup(request, ctx, policy, state)

    async def store(self, request: dict[str, Any], result: ChatResult, ctx: RequestContext) -> None:
        state = ctx.cache_state
        if state is None or state.served is not None:
            return
        if state.claim is not None and self.idempotency is not None:
            await self.idempotency.complete(state.claim, result.body)
        if state.key is not None and is_complete(result.body):
            try:
                await self._keep(state, result.body)
            except Exception:
                # The client has a good answer; a cache that cannot keep it must not turn it into an error.
                log.exception("could not cache the answer to request %s", ctx.request_id)

    def capture(
        self, request: dict[str, Any], chunks: AsyncIterator[bytes], tally: StreamUsage, ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """The stream, watched: its chunks are kept when the answer is to be stored (`stream_ended` stores them
        once the client has had the whole answer, after the output guardrails passed it)."""
        state = ctx.cache_state
        if state is None:
            return chunks
        if state.served is not None:
            return _uncharged(chunks, tally)
        if state.key is None and state.claim is None:
            return chunks
        return _kept(chunks, state)

    async def stream_ended(self, ctx: RequestContext) -> None:
        """A stream reached its end: store it like a JSON answer."""
        state = ctx.cache_state
        if state is None or state.captured is None or not state.stream_finished:
            return
        body = chunks_to_completion(state.captured)
        state.captured = None
        if body is not None:
            await self.store({}, ChatResult(body, usage_from_openai_json(body) or Usage()), ctx)

    def settle(self, ctx: RequestContext) -> None:
        """The request is over: if it still holds an idempotency key (it failed or was cut off), free it."""
        state = ctx.cache_state
        if state is not None and state.claim is not None and self.idempotency is not None:
            self.idempotency.abandon(state.claim)

    async def start(self) -> None:
        if self.backend is not None:
            await self.backend.start()
        if self._wants_semantic:
            self.semantic = await self._build_semantic()
            self._share_semantic(self.semantic)
        if self.idempotency is not None:
            await self.idempotency.start()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.semantic is not None and self.semantic.feed is not None:
            await self.semantic.feed.aclose()
        if self.idempotency is not None:
            await self.idempotency.aclose()
        if self.backend is not None:
            await self.backend.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # --- lookup ---------------------------------------------------------------------------------

    async def _begin_idempotent(
        self, header: str, request: dict[str, Any], ctx: RequestContext, state: CacheState
    ) -> ChatResult | None:
        assert self.idempotency is not None
        outcome = await self.idempotency.begin(header, ctx.principal.key_id, fingerprint(request))
        if isinstance(outcome, Claim):
            state.claim = outcome
            return None
        state.served = IDEMPOTENT_REPLAY
        ctx.add_header("idempotent-replayed", "true")
        _served(ctx, IDEMPOTENT_REPLAY)
        return ChatResult(outcome, Usage())

    async def _lookup(
        self, request: dict[str, Any], ctx: RequestContext, policy: AliasPolicy, state: CacheState
    ) -> ChatResult | None:
        assert self.backend is not None
        read, write, ttl = _controls(ctx.control, policy, request)
        if not read:
            _mark(ctx, BYPASS)
        namespace = _namespace(policy, ctx)
        if write:
            state.key, state.ttl = request_key(request, namespace), ttl
        if not read:
            return None
        key = state.key or request_key(request, namespace)
        body = await self.backend.get(key)
        if body is not None:
            return await self._serve(ctx, state, HIT, body)
        if policy.semantic is not None and self.semantic is not None:
            body = await self._semantic_lookup(request, namespace, policy.semantic, state)
            if body is not None:
                return await self._serve(ctx, state, SEMANTIC_HIT, body)
        _mark(ctx, MISS)
        return None

    async def _semantic_lookup(
        self, request: dict[str, Any], namespace: str, policy: SemanticPolicy, state: CacheState
    ) -> bytes | None:
        assert self.semantic is not None and self.backend is not None
        text = prompt_text(request)
        if text is None:
            return None
        try:
            prompt = await self.semantic.prompt(context_key(request, namespace, policy.context), text)
        except Exception as exc:
            log.warning("semantic cache: could not embed the prompt (%s); looking up exact matches only", exc)
            return None
        state.prompt = prompt
        candidate = self.semantic.find(prompt, policy)
        if candidate is None:
            return None
        body = await self.backend.get(candidate.entry.payload.key)
        if body is None:
            self.semantic.forget(candidate.entry)  # its answer expired or was evicted
            return None
        if candidate.hit:
            self.semantic.used(candidate.entry)
            return body
        state.candidate, state.candidate_body = candidate, body
        return None

    async def _serve(self, ctx: RequestContext, state: CacheState, how: str, body: bytes) -> ChatResult:
        state.served = how
        state.key = None
        _mark(ctx, how)
        _served(ctx, how)
        if state.claim is not None and self.idempotency is not None:
            # A cached answer is an answer: the key now replays it.
            await self.idempotency.complete(state.claim, body)
        return ChatResult(body, Usage())

    # --- store ----------------------------------------------------------------------------------

    async def _keep(self, state: CacheState, body: bytes) -> None:
        assert self.backend is not None and state.key is not None
        await self.backend.set(state.key, body, state.ttl)
        if state.prompt is None or self.semantic is None:
            return
        if state.candidate is not None and state.candidate_body is not None:
            self._spawn(self._verify(state.candidate, state.candidate_body, body, state.prompt, state.key, state.ttl))
        else:
            self.semantic.add(state.prompt, state.key, state.ttl)

    async def _verify(
        self, candidate: Candidate, cached: bytes, fresh: bytes, prompt: Prompt, key: str, ttl: float
    ) -> None:
        """Learned mode: was the entry's answer right for this prompt? Learn it; index the prompt if not."""
        from sluicegate.cache.semantic import answer_text
        from sluicegate.requests import decode_json_object

        assert self.semantic is not None
        try:
            old, new = answer_text(decode_json_object(cached)), answer_text(decode_json_object(fresh))
            same = await self.semantic.same_answer(old, new, self.settings.semantic.answer_similarity)
        except Exception as exc:
            log.warning("semantic cache: could not verify an answer: %s", exc)
            return
        self.semantic.verify(candidate, same)
        if not same:
            self.semantic.add(prompt, key, ttl)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- start-up -------------------------------------------------------------------------------

    def _backend(self) -> Backend:
        settings = self.settings
        if settings.backend == "memory":
            from sluicegate.cache.memory import MemoryBackend

            return MemoryBackend(settings.max_bytes)
        if settings.backend == "redis":
            from sluicegate.cache.redis import RedisBackend

            url = settings.url or self.config.redis_url
            if not url:
                raise ConfigError("at cache.url: cache.backend is redis but neither cache.url nor redis_url is set")
            return RedisBackend(url, settings.timeout)
        raise ConfigurationError(f"cache.backend must be memory or redis, not '{settings.backend}'")

    async def _build_semantic(self) -> SemanticCache:
        try:
            from sluicegate.cache.semantic import SemanticCache
        except ImportError as exc:
            raise ConfigurationError(
                f"cache.semantic needs the semantic extra ({exc.name} is missing): pip install 'sluicegate[semantic]'"
            ) from None

        semantic = self.settings.semantic
        embedder = await self._embedder(semantic)
        learned = None
        if semantic.mode == "learned" or any(p and p.semantic and p.semantic.learned for p in self._policies.values()):
            from sluicegate.cache.learned import LearnedPolicy

            learned = LearnedPolicy(semantic.target_false_hit_rate)
        return SemanticCache(embedder, semantic.max_entries, learned)

    def _share_semantic(self, semantic: SemanticCache) -> None:
        """With the answers in Redis, the index is shared through Redis too (cache/semantic_feed.py)."""
        from sluicegate.cache.redis import RedisBackend, connect

        backend = self.backend
        if not isinstance(backend, RedisBackend):
            return
        from sluicegate.cache.semantic_feed import BLOCK_MS, SemanticFeed

        # its own connections: a blocking read waits up to BLOCK_MS, past the cache's per-call deadline
        client = connect(backend.url, BLOCK_MS / 1000 + 2.0)
        stream = f"{self.settings.namespace}:semantic-feed"
        model = f"{semantic.embedder.name}/{semantic.embedder.dimensions}"
        semantic.feed = SemanticFeed(client, stream, self.settings.semantic.max_entries, model, 1.0)
        semantic.feed.follow(semantic)

    async def _embedder(self, semantic: SemanticConfig) -> Any:
        from sluicegate.cache.embedder import EmbedderUnavailable, GatewayEmbedder, LocalEmbedder, shared_minilm

        if semantic.model.startswith("gateway:"):
            embeddings = self._embeddings
            if embeddings is None:
                raise ConfigurationError("cache.semantic.model gateway:<alias> needs the gateway's embeddings")

            async def call(request: dict[str, Any]) -> dict[str, Any]:
                answer = await embeddings(request, RequestContext(request_id="semantic-cache", authenticated=True))
                result: dict[str, Any] = answer.result.as_dict()
                return result

            return GatewayEmbedder(semantic.model.removeprefix("gateway:"), call)
        if semantic.model != "minilm-l6":
            raise ConfigurationError(
                f"cache.semantic.model must be minilm-l6 or gateway:<alias>, not '{semantic.model}'"
            )
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(None, shared_minilm)
        except EmbedderUnavailable as exc:
            raise ConfigurationError(f"cache.semantic: {exc}") from None
        from concurrent.futures import ThreadPoolExecutor

        # One thread: embeddings queue instead of competing for the same cores.
        executor = self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluicegate-embed")

        def run(work: Callable[[], Any]) -> Awaitable[Any]:
            return loop.run_in_executor(executor, work)

        return LocalEmbedder(run, model)


def _policy(settings: CacheConfig, alias: bool | AliasCacheConfig | None) -> AliasPolicy | None:
    if alias is False or (alias is None and not settings.enabled):
        return None
    override = alias if isinstance(alias, AliasCacheConfig) else AliasCacheConfig()
    return AliasPolicy(
        ttl=override.ttl if override.ttl is not None else settings.ttl,
        namespace=override.namespace or settings.namespace,
        cache_temperature=_pick(override.cache_temperature, settings.cache_temperature),
        per_key=_pick(override.per_key, settings.per_key),
        semantic=_semantic_policy(settings.semantic, override.semantic),
    )


def _semantic_policy(settings: SemanticConfig, alias: bool | AliasSemanticConfig | None) -> SemanticPolicy | None:
    override = alias if isinstance(alias, AliasSemanticConfig) else AliasSemanticConfig()
    enabled = alias if isinstance(alias, bool) else _pick(override.enabled, settings.enabled)
    if not enabled:
        return None
    mode = override.mode or settings.mode
    context = override.context or settings.context
    if mode not in ("static", "learned"):
        raise ConfigurationError(f"cache.semantic.mode must be static or learned, not '{mode}'")
    if context not in ("full", "system_and_tools"):
        raise ConfigurationError(f"cache.semantic.context must be full or system_and_tools, not '{context}'")
    threshold = override.threshold if override.threshold is not None else settings.threshold
    return SemanticPolicy(threshold, mode == "learned", _pick(override.guard, settings.guard), context)


def _check_model(config: Config) -> None:
    model = config.cache.semantic.model
    if model.startswith("gateway:"):
        alias = model.removeprefix("gateway:")
        if alias not in {m.name for m in config.models}:
            raise ConfigError(f"at cache.semantic.model: '{alias}' is not an alias of this gateway")
    elif model != "minilm-l6":
        raise ConfigError(f"at cache.semantic.model: expected minilm-l6 or gateway:<alias>, not '{model}'")


def _pick(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _controls(control: dict[str, str], policy: AliasPolicy, request: dict[str, Any]) -> tuple[bool, bool, float]:
    """(read the cache, write it, ttl) as the request's headers and its temperature allow."""
    read = write = True
    directives = control.get("cache-control")
    if directives:
        tokens = {token.strip().lower() for token in directives.split(",")}
        if "no-store" in tokens:
            read = write = False
        elif "no-cache" in tokens:
            read = False  # answer fresh, but keep the fresh answer
    temperature = request.get("temperature")
    if isinstance(temperature, int | float) and temperature > 0 and not policy.cache_temperature:
        read = write = False
    ttl = policy.ttl
    override = control.get("x-sluicegate-cache-ttl")
    if override is not None:
        try:
            ttl = float(override)
        except ValueError:
            raise InvalidRequestError(
                "x-sluicegate-cache-ttl must be a number of seconds", code="invalid_cache_ttl"
            ) from None
        if ttl <= 0:
            write = False
    return read, write, ttl


def _namespace(policy: AliasPolicy, ctx: RequestContext) -> str:
    namespace = policy.namespace
    principal = ctx.principal
    extra = principal.metadata.get("cache_namespace") if principal.metadata else None
    if extra:
        namespace = f"{namespace}:ns:{extra}"
    if policy.per_key:
        namespace = f"{namespace}:key:{principal.key_id or '-'}"
    return namespace


def _mark(ctx: RequestContext, status: str) -> None:
    if ctx.record is not None and ctx.record.cache is None:
        ctx.record.cache = status
        ctx.add_header(_HEADER, status)


def _served(ctx: RequestContext, how: str) -> None:
    """Answered without the provider: nothing to charge (governance reads `record.cache` and the zero cost)."""
    if ctx.record is not None:
        ctx.record.cache = how
        ctx.record.cost_usd = 0.0


async def _uncharged(chunks: AsyncIterator[bytes], tally: StreamUsage) -> AsyncIterator[bytes]:
    """A replayed stream: its chunks carry the original usage for the client; the record must show none."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    tally.usage = Usage()


async def _kept(chunks: AsyncIterator[bytes], state: CacheState) -> AsyncIterator[bytes]:
    kept = state.captured = []
    try:
        async for chunk in chunks:
            kept.append(chunk)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    # Reached only when the stream ran out: an error or a client leaving raised out of the loop above.
    state.stream_finished = True
