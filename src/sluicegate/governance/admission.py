"""Admission: which aliases a key may call, rate limits, concurrency and budgets, and what each request cost.

`admit` returns a ticket, entered before the request's work and exited after it, so that whatever it
reserves (a concurrency slot, estimated tokens) is released or reconciled with the real usage at the end,
and the cost is computed from the usage the provider reported, where the answer is produced.

Nothing is done for a request that no limit, budget or price concerns: `admit` hands back a shared
ticket that does nothing, after one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sluicegate.config import Config
from sluicegate.context import RequestContext, RequestRecord
from sluicegate.errors import PermissionDeniedError
from sluicegate.governance.budgets import BudgetSpec, PeriodClock
from sluicegate.governance.directory import Directory
from sluicegate.governance.keys import KeyRecord
from sluicegate.governance.limits import (
    BUDGET,
    PARALLEL,
    RPM,
    TPM,
    Check,
    Grant,
    Limiter,
    LocalLimiter,
    RedisLimiter,
    quota_headers,
)
from sluicegate.governance.pricing import PriceBook, cost, format_cost
from sluicegate.governance.spend import SpendSink
from sluicegate.governance.teams import TeamRecord
from sluicegate.governance.tokens import Tokenizer
from sluicegate.providers.base import Usage
from sluicegate.routing.strategies import set_price_table
from sluicegate.streaming.chunks import StreamUsage

log = logging.getLogger("sluicegate.governance")

#: `record.cache` values that mean the provider was called for this request; anything else is a replay
_FRESH = frozenset({"miss", "bypass"})


class Ticket:
    """What an admitted request holds. The default reserves nothing, and costs nothing on the hot path."""

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        return None

    def tally(self) -> StreamUsage:
        """The usage tally for this request's stream."""
        return StreamUsage()


_ADMIT_ALL = Ticket()


@dataclass(slots=True)
class _AliasPlan:
    #: the alias's own limits (`models[].limits`)
    checks: list[Check] = field(default_factory=list)
    #: whether any deployment of the alias has a price, so its requests need costing
    priced: bool = False

    @property
    def idle(self) -> bool:
        return not self.checks and not self.priced


class Admission:
    def __init__(self, config: Config, directory: Directory | None = None) -> None:
        self.config = config
        governance = config.governance
        self.directory = directory
        self.prices = PriceBook(config)
        self.tokenizer = Tokenizer(governance.tokenizer)
        self.clock = PeriodClock()
        self.cost_in_response = governance.cost_in_response
        self.limiter: Limiter = (
            RedisLimiter(
                config.redis_url,
                prefix=governance.redis_prefix,
                timeout=governance.redis_timeout,
                failure=governance.redis_failure,
                lease_seconds=governance.lease_seconds,
                budget_refresh=governance.budget_refresh,
            )
            if config.redis_url
            else LocalLimiter(governance.budget_refresh)
        )
        store = directory.store if directory is not None else None
        self.spend = (
            SpendSink(store, batch_size=governance.spend_batch_size, interval=governance.spend_flush_interval)
            if store is not None
            else None
        )
        self._plans: dict[str, _AliasPlan] = {
            model.name: _AliasPlan(
                checks=_checks("alias", model.name, f"alias '{model.name}'", model.limits) if model.limits else [],
                priced=self.prices.alias_priced(model.name),
            )
            for model in config.models
        }
        # The routing `cost` strategy prices deployments the config gives no price from this table too.
        set_price_table(lambda deployment: self.prices.input_output(deployment.label))
        self._key_checks: dict[str, tuple[KeyRecord, list[Check]]] = {}
        self._team_checks: dict[str, tuple[TeamRecord, list[Check]]] = {}
        self._budget_checks: dict[tuple[str, str], Check] = {}
        self._leases = itertools.count(1)
        self._lease_prefix = secrets.token_hex(6) + ":"

    def sinks(self) -> list[SpendSink]:
        """Recorder sinks governance contributes: the spend writer, when there is a database."""
        return [self.spend] if self.spend is not None else []

    def admit(self, ctx: RequestContext, request: dict[str, Any]) -> Ticket:
        """A ticket whose `__aenter__` raises 429/403 when a limit, a budget or the key's models say no."""
        plan = self._plan(request.get("model"))
        principal = ctx.principal
        if principal.key_id is None and principal.team is None and plan.idle:
            return _ADMIT_ALL
        return GovernedTicket(self, ctx, request, plan)

    def _plan(self, alias: Any) -> _AliasPlan:
        plan = self._plans.get(alias)
        if plan is None:
            # `<provider>/<model>` addressed directly: priced if the table knows it. Remembered, within reason.
            plan = _AliasPlan(priced=isinstance(alias, str) and self.prices.alias_priced(alias))
            if len(self._plans) < 10_000:
                self._plans[alias] = plan
        return plan

    def key_checks(self, key: KeyRecord) -> list[Check]:
        return _cached_checks(self._key_checks, "key", key, f"key '{key.name}'")

    def team_checks(self, team: TeamRecord) -> list[Check]:
        return _cached_checks(self._team_checks, "team", team, f"team '{team.id}'")

    async def budget_check(self, scope: str, ident: str, what: str, budget: BudgetSpec) -> Check:
        """The check for this period of a key's or team's budget: built once per period, not per request."""
        start, end = self.clock.bounds(budget.period)
        cached = self._budget_checks.get((scope, ident))
        if cached is not None and cached.resets_at == end and cached.budget is budget and cached.what == what:
            check = cached
        else:
            check = Check(f"budget:{scope}:{ident}:{int(start)}", BUDGET, budget.amount_usd, what, end, budget)
            self._budget_checks[(scope, ident)] = check
        await self.limiter.seed_budget(check, self._spend_loader(scope, ident, start))
        return check

    def _spend_loader(self, scope: str, ident: str, since: float) -> Callable[[], Awaitable[float]]:
        async def load() -> float:
            store = self.directory.store if self.directory is not None else None
            return await store.spend_total(scope, ident, since) if store is not None else 0.0

        return load

    def new_lease(self) -> str:
        return f"{self._lease_prefix}{next(self._leases)}"

    def charge(self, record: RequestRecord, ctx: RequestContext) -> float:
        """Set `record.cost_usd` from the usage the provider reported; 0 for answers replayed from a cache."""
        if record.cache is not None and record.cache not in _FRESH:
            record.cost_usd = 0.0
        else:
            price = self.prices.for_label(record.deployment)
            if price is None or record.usage is None:
                return 0.0
            record.cost_usd = cost(record.usage, price)
        if self.cost_in_response and not record.stream:
            ctx.add_header("x-sluicegate-cost", format_cost(record.cost_usd))
        return record.cost_usd

    def stream_extras(self, ctx: RequestContext) -> Callable[[Usage], dict[str, Any] | None]:
        """The `cost` field that rides beside `usage` in the final chunk of a stream."""

        def extras(usage: Usage) -> dict[str, Any] | None:
            record = ctx.record
            if record is None:
                return None
            if record.cache is not None and record.cache not in _FRESH:
                return {"cost": 0.0}
            price = self.prices.for_label(record.deployment)
            return {"cost": round(cost(usage, price), 10)} if price is not None else None

        return extras

    async def start(self) -> None:
        await self.limiter.start()
        wanted = (self.directory is not None and self.directory.store is not None) or any(
            not plan.idle for plan in self._plans.values()
        )
        if wanted:
            await asyncio.to_thread(self.tokenizer.load)

    async def aclose(self) -> None:
        await self.limiter.aclose()


class GovernedTicket(Ticket):
    __slots__ = ("_admission", "_ctx", "_grant", "_plan", "_request", "_tally", "_tokens")

    def __init__(self, admission: Admission, ctx: RequestContext, request: dict[str, Any], plan: _AliasPlan) -> None:
        self._admission = admission
        self._ctx = ctx
        self._request = request
        self._plan = plan
        self._grant: Grant | None = None
        self._tally: StreamUsage | None = None
        self._tokens = 0

    async def __aenter__(self) -> GovernedTicket:
        admission, ctx = self._admission, self._ctx
        principal = ctx.principal
        alias = self._request.get("model")
        directory = admission.directory
        key = directory.key(principal.key_id) if principal.key_id and directory else None
        team = await directory.team(principal.team) if principal.team and directory else None
        _check_models(alias, principal.models, "key")
        if team is not None:
            _check_models(alias, team.allowed, f"team '{team.id}'")
        checks = list(self._plan.checks)
        if key is not None:
            checks += admission.key_checks(key)
            if key.budget is not None:
                checks.append(await admission.budget_check("key", key.id, f"key '{key.name}'", key.budget))
        if team is not None:
            checks += admission.team_checks(team)
            if team.budget is not None:
                checks.append(await admission.budget_check("team", team.id, f"team '{team.id}'", team.budget))
        if any(check.kind == TPM for check in checks):
            self._tokens = admission.tokenizer.prompt_tokens(self._request)
        if checks:
            grant = await admission.limiter.acquire(checks, self._tokens, admission.new_lease())
            self._grant = grant
            ctx.response_headers.extend(quota_headers(grant))
            for check, spent in grant.over_soft:
                assert check.budget is not None
                ctx.add_header("x-sluicegate-budget-warning", f"{check.what} is over its {check.budget.period} budget")
                log.warning("%s is over its soft budget: $%.4f of $%.2f", check.what, spent, check.limit)
        return self

    def tally(self) -> StreamUsage:
        admission = self._admission
        keep = self._plan.priced or self._tokens > 0
        extras = admission.stream_extras(self._ctx) if self._plan.priced and admission.cost_in_response else None
        self._tally = StreamUsage(keep_text=keep, extras=extras)
        return self._tally

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        record = self._ctx.record
        spent = 0.0
        used = 0
        try:
            if record is not None:
                if record.usage is None and self._tally is not None and record.deployment is not None:
                    await self._estimate(record, self._tally)
                spent = self._admission.charge(record, self._ctx)
                replayed = record.cache is not None and record.cache not in _FRESH
                if record.usage is not None and not replayed:
                    used = record.usage.total_tokens or record.usage.prompt_tokens + record.usage.completion_tokens
        except Exception:
            # Accounting must never turn an answered request into a failed one, nor keep its slots.
            log.exception("costing request %s failed", self._ctx.request_id)
        if self._grant is not None:
            await self._grant.settle(used - self._grant.tokens, spent)

    async def _estimate(self, record: RequestRecord, tally: StreamUsage) -> None:
        """A stream that ended without the provider's usage (cancelled, cut off): count what passed."""
        text = tally.text()
        if not text and tally.chunks == 0:
            return
        tokenizer = self._admission.tokenizer
        prompt = self._tokens or tokenizer.prompt_tokens(self._request)
        completion = await asyncio.to_thread(tokenizer.count_all, text)
        record.usage = Usage(prompt, completion, prompt + completion)
        record.usage_estimated = True


def _check_models(alias: Any, allowed: frozenset[str] | None, whose: str) -> None:
    if allowed is not None and alias not in allowed:
        listed = ", ".join(sorted(allowed)) or "none"
        raise PermissionDeniedError(
            f"This {whose} may not use the model '{alias}' (allowed: {listed})", code="model_not_allowed"
        )


def _checks(scope: str, ident: str, what: str, limits: Any) -> list[Check]:
    """An alias's `limits:` from the config."""
    return _limit_checks(scope, ident, what, limits.rpm, limits.tpm, limits.max_parallel)


def _cached_checks(cache: dict[str, Any], scope: str, record: KeyRecord | TeamRecord, what: str) -> list[Check]:
    """A key's or team's limits from the database, built again only when the directory hands out a new record."""
    cached = cache.get(record.id)
    if cached is None or cached[0] is not record:
        checks = _limit_checks(scope, record.id, what, record.rpm_limit, record.tpm_limit, record.max_parallel)
        cached = cache[record.id] = (record, checks)
    result: list[Check] = cached[1]
    return result


def _limit_checks(scope: str, ident: str, what: str, rpm: Any, tpm: Any, parallel: Any) -> list[Check]:
    checks = []
    for kind, limit in ((RPM, rpm), (TPM, tpm), (PARALLEL, parallel)):
        if limit:
            checks.append(Check(f"{scope}:{ident}:{kind}", kind, limit, what))
    return checks
