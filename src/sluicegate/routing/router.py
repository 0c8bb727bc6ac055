"""The single place that picks deployments for a request and moves on when one fails.

For one request: the alias's deployments in the order its strategy gives, each tried (and retried on
retryable failures, with backoff) unless it is cooling down or saturated; then the alias's fallback
aliases the same way. A prompt too long for the context window, or refused on content-policy grounds,
switches to the alias's special chain instead. Every attempt is recorded with its status, error code
and latency, and settles the deployment's health.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sluicegate.context import AttemptRecord, RequestContext
from sluicegate.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)
from sluicegate.providers.base import Provider, Timeouts
from sluicegate.routing import retry
from sluicegate.routing.config import CooldownConfig, RoutingConfig, TimeoutOverrides
from sluicegate.routing.health import FAILING, Block, DeploymentStats, Health, HealthStore, Lease
from sluicegate.routing.overrides import Overrides, read_overrides
from sluicegate.routing.strategies import Prices, Strategy, make_strategy
from sluicegate.routing.streams import GuardedStream, read_head

if TYPE_CHECKING:
    from sluicegate.config import Config, DeploymentConfig

T = TypeVar("T")

#: one attempt as the request log and the response headers see it
Attempt = AttemptRecord
#: `provider/model` names asked for directly are remembered up to this many (the names come from clients)
_MAX_DIRECT = 1024
_DEFAULT_ROUTING = RoutingConfig()
#: less time than this left of the request's timeout is not worth another attempt
_MIN_ATTEMPT = 0.1


@dataclass(slots=True, eq=False)
class Deployment:
    """One model at one provider, as an alias lists it, with its routing knobs and health counters."""

    provider: Provider
    model: str
    timeouts: Timeouts
    #: what `x-sluicegate-provider` says: `<provider name>/<model>`
    label: str = ""
    weight: float = 1.0
    max_concurrent: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    #: (input, output) USD per 1M tokens from the config; see strategies.deployment_price
    prices: Prices | None = None
    inter_chunk: float | None = None
    cooldown: CooldownConfig = _DEFAULT_ROUTING.cooldown
    #: shared by every alias listing the same label
    stats: DeploymentStats = field(default=None)  # type: ignore[assignment]
    #: whether any per-deployment limit is set (checked before looking at the counters)
    limited: bool = False

    def __post_init__(self) -> None:
        if not self.label:
            self.label = f"{self.provider.name}/{self.model}"
        if cast("DeploymentStats | None", self.stats) is None:
            self.stats = DeploymentStats(self.cooldown.window)
        self.limited = self.max_concurrent is not None or self.rpm is not None or self.tpm is not None


@dataclass(slots=True)
class AliasPlan:
    """How one alias routes: built once at start-up."""

    name: str
    deployments: list[Deployment]
    strategy: Strategy
    routing: RoutingConfig
    retry_on: frozenset[int]
    fallbacks: list[str]


@dataclass(slots=True)
class Routed(Generic[T]):
    deployment: Deployment
    value: T
    #: the failed attempts before the one that answered
    attempts: list[Attempt] = field(default_factory=list)


def provider_timeouts(provider: Provider) -> Timeouts:
    timeout = provider.config.timeout
    return Timeouts(connect=timeout.connect, first_token=timeout.first_token, total=timeout.total)


def _merged(timeouts: Timeouts, override: TimeoutOverrides | None) -> Timeouts:
    if override is None:
        return timeouts
    return Timeouts(
        connect=override.connect or timeouts.connect,
        first_token=override.first_token or timeouts.first_token,
        total=override.total or timeouts.total,
    )


def build_deployment(
    provider: Provider, config: DeploymentConfig, routing: RoutingConfig, stats: dict[str, DeploymentStats]
) -> Deployment:
    """A deployment with its timeouts resolved: deployment > alias `routing.timeout` > provider."""
    timeouts = _merged(_merged(provider_timeouts(provider), routing.timeout), config.timeout)
    inter_chunk = (config.timeout.inter_chunk if config.timeout else None) or routing.timeout.inter_chunk
    prices = None
    if config.input_price is not None or config.output_price is not None:
        prices = (config.input_price or 0.0, config.output_price or 0.0)
    deployment = Deployment(
        provider,
        config.model,
        timeouts,
        weight=config.weight,
        max_concurrent=config.max_concurrent,
        rpm=config.rpm,
        tpm=config.tpm,
        prices=prices,
        inter_chunk=inter_chunk,
        cooldown=routing.cooldown,
    )
    deployment.stats = stats.setdefault(deployment.label, deployment.stats)
    return deployment


class Router:
    def __init__(
        self,
        plans: dict[str, AliasPlan],
        providers: dict[str, Provider],
        *,
        health: Health | None = None,
        rng: random.Random | None = None,
        stats: dict[str, DeploymentStats] | None = None,
    ) -> None:
        self._plans = plans
        self._providers = providers
        self._direct: dict[str, AliasPlan] = {}
        self._stats = stats if stats is not None else {}
        self.health = health or Health()
        #: the source of every random choice (weighted, least-busy ties, jitter); seed it for reproducible runs
        self.random = rng or random.Random()

    @classmethod
    def from_config(cls, config: Config, providers: dict[str, Provider], *, store: HealthStore | None = None) -> Router:
        rng = random.Random()
        stats: dict[str, DeploymentStats] = {}
        plans = {}
        for model in config.models:
            deployments = [build_deployment(providers[d.provider], d, model.routing, stats) for d in model.deployments]
            plans[model.name] = _plan(model.name, deployments, model.routing, list(model.fallbacks), rng)
        if store is None:
            from sluicegate.routing.health_redis import build_health_store  # shared breakers with redis_url

            store = build_health_store(config)
        return cls(plans, providers, health=Health(store), rng=rng, stats=stats)

    @property
    def aliases(self) -> list[str]:
        return list(self._plans)

    def plan(self, model: str) -> AliasPlan:
        """The plan for `model`: an alias, or `provider/model` addressed directly."""
        plan = self._plans.get(model) or self._direct.get(model)
        if plan is not None:
            return plan
        provider_name, sep, provider_model = model.partition("/")
        provider = self._providers.get(provider_name) if sep and provider_model else None
        if provider is None:
            raise NotFoundError(
                f"The model '{model}' does not exist: it is neither a configured alias nor '<provider>/<model>' "
                "with a configured provider",
                param="model",
            )
        deployment = Deployment(provider, provider_model, provider_timeouts(provider))
        deployment.stats = self._stats.get(deployment.label) or deployment.stats
        plan = _plan(model, [deployment], _DEFAULT_ROUTING, [], self.random)
        if len(self._direct) < _MAX_DIRECT:
            self._direct[model] = plan
            self._stats.setdefault(deployment.label, deployment.stats)
        return plan

    def candidates(self, model: str) -> list[Deployment]:
        return self.plan(model).deployments

    def deployments(self) -> Iterator[tuple[Deployment, list[str]]]:
        """Every configured deployment once (by label), with the aliases that list it."""
        seen: dict[str, tuple[Deployment, list[str]]] = {}
        for plan in [*self._plans.values(), *self._direct.values()]:
            for deployment in plan.deployments:
                entry = seen.setdefault(deployment.label, (deployment, []))
                if plan.name not in entry[1]:
                    entry[1].append(plan.name)
        yield from seen.values()

    # --- routing ---------------------------------------------------------------------------------

    async def route(
        self, request: dict[str, Any], ctx: RequestContext, attempt: Callable[[Deployment, Timeouts], Awaitable[T]]
    ) -> Routed[T]:
        """Run `attempt` on deployments until one succeeds; raise the last failure otherwise."""
        return await self._run(request, ctx, attempt, None)

    async def route_stream(
        self,
        request: dict[str, Any],
        ctx: RequestContext,
        open_stream: Callable[[Deployment, Timeouts], AsyncIterator[bytes]],
    ) -> Routed[GuardedStream]:
        """Open a stream: fail over until its first content chunk, then hand back the whole stream.

        The rest settles the deployment's health when the stream ends, and cuts it when it stalls.
        """
        routed: Routed[GuardedStream] = await self._run(request, ctx, None, open_stream)
        record = ctx.record
        if record is not None:
            # A failure after the commit is written onto the attempt that answered.
            routed.value.note = record.attempts[-1]
        return routed

    async def _run(
        self,
        request: dict[str, Any],
        ctx: RequestContext,
        attempt: Callable[[Deployment, Timeouts], Awaitable[Any]] | None,
        open_stream: Callable[[Deployment, Timeouts], AsyncIterator[bytes]] | None,
    ) -> Routed[Any]:
        plan = self.plan(request["model"])
        overrides = read_overrides(request, ctx.control, ctx.started)
        if overrides is not None and overrides.fallbacks:
            self._check_fallbacks(overrides.fallbacks)
        journey = _Journey(plan, overrides)
        try:
            for group in self._chain(journey):
                retries = group.routing.retries
                if overrides is not None and overrides.retries is not None:
                    retries = overrides.retries
                for deployment in group.strategy.order(group.deployments):
                    if journey.tried is not None and deployment.label in journey.tried:
                        continue
                    for number in range(retries + 1):
                        lease = self._lease(deployment, journey)
                        if lease is None:
                            break
                        timeouts = deployment.timeouts
                        if journey.deadline is not None:
                            timeouts = _bounded(timeouts, journey.deadline)
                        started = time.perf_counter()
                        try:
                            if open_stream is None:
                                assert attempt is not None
                                value = await attempt(deployment, timeouts)
                            else:
                                value = await _open(open_stream, deployment, timeouts, lease, started)
                        except GatewayError as error:
                            if await self._failed(error, lease, started, retries - number, group, journey):
                                continue
                            break
                        except BaseException:
                            lease.release()
                            raise
                        now = time.perf_counter()
                        latency = (now - started) * 1000
                        if open_stream is None:
                            lease.succeed(latency, now, _tokens(value) if deployment.tpm is not None else 0)
                        return self._answered(ctx, deployment, value, journey.attempts, latency)
                    if journey.switch is not None:
                        break
        except BaseException:
            record = ctx.record
            if record is not None:
                record.attempts = journey.attempts
            raise
        record = ctx.record
        if record is not None:
            record.attempts = journey.attempts
        raise journey.failure()

    def _chain(self, journey: _Journey) -> Iterator[AliasPlan]:
        """The aliases to go through: the requested one, its fallbacks, or a special chain once a
        deployment refused the prompt as too long or against its content policy."""
        plan = journey.plan
        yield plan
        if not journey.switching():
            overrides = journey.overrides
            names = plan.fallbacks
            if overrides is not None and overrides.fallbacks is not None:
                names = overrides.fallbacks
            for name in names:
                journey.remember_tried()
                yield self.plan(name)
                if journey.switching():
                    break
        if journey.switch is not None:
            special = _special_chain(plan.routing, journey.switch) or []
            journey.switch, journey.switched = None, True
            for name in special:
                journey.remember_tried()
                yield self.plan(name)

    def _lease(self, deployment: Deployment, journey: _Journey) -> Lease | None:
        """A hold on the deployment for one attempt, or None (and why) when it cannot take one now."""
        deadline = journey.deadline
        if deadline is not None and deadline - time.perf_counter() < _MIN_ATTEMPT:
            raise journey.out_of_time()
        acquired = self.health.acquire(deployment)
        if type(acquired) is Lease:
            return acquired
        journey.blocked(acquired)  # type: ignore[arg-type]
        return None

    async def _failed(
        self, error: GatewayError, lease: Lease, started: float, retries_left: int, group: AliasPlan, journey: _Journey
    ) -> bool:
        """Note a failed attempt; True when the same deployment should be tried again (after the wait)."""
        latency = (time.perf_counter() - started) * 1000
        label = lease.deployment.label
        journey.attempts.append(Attempt(label, retry.upstream_status(error), error.code, latency))
        if not error.retryable:
            # The request itself was refused: nothing to learn about the deployment's health.
            lease.release()
            journey.refused(error)
            return False
        lease.fail(error, latency)
        journey.last_error = error
        if not retries_left or not retry.may_retry(error, group.retry_on):
            return False
        routing = group.routing
        retried = sum(1 for attempt in journey.attempts if attempt.deployment == label) - 1
        wait = retry.retry_wait(
            error, retried, routing.backoff, routing.max_backoff, routing.max_retry_after, self.random
        )
        deadline = journey.deadline
        if wait is None or (deadline is not None and time.perf_counter() + wait >= deadline):
            return False
        await asyncio.sleep(wait)
        return True

    def _answered(
        self, ctx: RequestContext, deployment: Deployment, value: T, attempts: list[Attempt], latency: float
    ) -> Routed[T]:
        record = ctx.record
        answered = Attempt(deployment.label, 200, None, latency)
        if attempts:
            ctx.add_header("x-sluicegate-failed-attempts", ", ".join(_describe(a) for a in attempts))
            if record is not None:
                record.attempts = [*attempts, answered]
            return Routed(deployment, value, attempts)
        if record is not None:
            record.attempts = [answered]
        return Routed(deployment, value, attempts)

    def _check_fallbacks(self, names: list[str]) -> None:
        for name in names:
            try:
                self.plan(name)
            except NotFoundError:
                raise InvalidRequestError(
                    f"fallback '{name}' is neither a configured alias nor '<provider>/<model>'",
                    param="fallbacks",
                    code="model_not_found",
                ) from None


class _Journey:
    """One request's way through the chain: what was tried, what was skipped, what went wrong."""

    __slots__ = ("attempts", "blocks", "deadline", "last_error", "overrides", "plan", "switch", "switched", "tried")

    def __init__(self, plan: AliasPlan, overrides: Overrides | None) -> None:
        self.plan = plan
        self.overrides = overrides
        self.deadline = overrides.deadline if overrides is not None else None
        self.attempts: list[Attempt] = []
        self.blocks: list[Block] | None = None
        self.last_error: GatewayError | None = None
        #: a special refusal (retry.CONTEXT_WINDOW / CONTENT_POLICY) waiting for its chain
        self.switch: str | None = None
        self.switched = False
        #: labels already attempted, once the chain reaches a second alias
        self.tried: set[str] | None = None

    def blocked(self, block: Block) -> None:
        if self.blocks is None:
            self.blocks = []
        self.blocks.append(block)

    def switching(self) -> bool:
        """Whether a special refusal is waiting for its chain (set by `refused` while the chain was paused)."""
        return self.switch is not None

    def remember_tried(self) -> None:
        self.tried = {attempt.deployment for attempt in self.attempts}

    def refused(self, error: GatewayError) -> None:
        """A non-retryable error: raise it, unless it opens the context-window or content-policy chain."""
        kind = retry.special_kind(error)
        if kind is None:
            raise error
        error = retry.recoded(error, kind)
        if self.switched or _special_chain(self.plan.routing, kind) is None:
            raise error
        self.switch = kind
        self.last_error = error

    def out_of_time(self) -> UpstreamTimeoutError:
        budget = self.overrides.budget if self.overrides is not None else None
        tried = f" after {len(self.attempts)} attempt(s)" if self.attempts else ""
        return UpstreamTimeoutError(f"the request's timeout of {budget:g}s ran out{tried}", code="request_timeout")

    def failure(self) -> GatewayError:
        if self.last_error is not None:
            return self.last_error
        if self.blocks:
            return _blocked(self.plan.name, self.blocks)
        return ServiceUnavailableError(f"no deployment available for '{self.plan.name}'")


def _plan(
    name: str, deployments: list[Deployment], routing: RoutingConfig, fallbacks: list[str], rng: random.Random
) -> AliasPlan:
    return AliasPlan(
        name,
        deployments,
        make_strategy(routing.strategy, rng),
        routing,
        frozenset(routing.retry_on),
        fallbacks,
    )


async def _open(
    open_stream: Callable[[Deployment, Timeouts], AsyncIterator[bytes]],
    deployment: Deployment,
    timeouts: Timeouts,
    lease: Lease,
    started: float,
) -> GuardedStream:
    """Open a stream up to its first content (held, replayed first); the stream settles `lease` when it ends."""
    chunks = open_stream(deployment, timeouts)
    held = await read_head(chunks, timeouts.first_token)
    lease.first_token((time.perf_counter() - started) * 1000)
    return GuardedStream(
        held, chunks, lease, inter_chunk=deployment.inter_chunk, count_tokens=deployment.tpm is not None
    )


def _special_chain(routing: RoutingConfig, kind: str) -> list[str] | None:
    names = routing.context_window_fallbacks if kind == retry.CONTEXT_WINDOW else routing.content_policy_fallbacks
    return names or None


def _bounded(timeouts: Timeouts, deadline: float) -> Timeouts:
    """The deployment's timeouts, none longer than what is left of the request's own timeout."""
    # Tenths of a second, rounded down: the HTTP client caches one timeout object per distinct value.
    left = max(_MIN_ATTEMPT, math.floor((deadline - time.perf_counter()) * 10) / 10)
    if left >= timeouts.total and left >= timeouts.first_token:
        return timeouts
    return Timeouts(min(timeouts.connect, left), min(timeouts.first_token, left), min(timeouts.total, left))


def _tokens(value: Any) -> int:
    usage = getattr(value, "usage", None)
    return int(getattr(usage, "total_tokens", 0) or 0)


def _describe(attempt: Attempt) -> str:
    return f"{attempt.deployment}:{attempt.status}:{attempt.error}"


def _blocked(model: str, blocks: list[Block]) -> GatewayError:
    """Every candidate was cooling down or saturated: fail fast, saying when to come back."""
    retry_after = min(block.retry_after for block in blocks)
    if all(block.reason == FAILING for block in blocks):
        return ServiceUnavailableError(
            f"every deployment of '{model}' is cooling down after repeated failures; retry in {retry_after:.0f}s",
            code="deployments_cooling_down",
            retry_after=retry_after,
        )
    return RateLimitError(
        f"every deployment of '{model}' is rate limited or at its configured limits; retry in {retry_after:.0f}s",
        code="deployments_saturated",
        retry_after=retry_after,
    )
