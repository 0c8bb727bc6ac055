"""Rate limits, concurrency and budget counters: in-process by default, in Redis (atomic Lua) when shared.

Requests and tokens per minute are counted in a sliding window of one-second buckets covering the last
60 whole seconds plus the current one, so no 60-second interval ever holds more than the limit, and a
burst is cut at exactly the limit. Checking every limit of a request and then counting it against all of
them is one atomic step (one Lua script in Redis, one uninterrupted function in-process): a request
refused by its team's limit does not use up its key's.

Concurrency slots in Redis are leases with an expiry, so a replica that dies holding slots frees them
after `governance.lease_seconds` instead of never.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluicegate.errors import RateLimitError, ServiceUnavailableError
from sluicegate.governance.budgets import BudgetSpec, budget_message

log = logging.getLogger("sluicegate.governance")

WINDOW = 60
RPM, TPM, PARALLEL, BUDGET = "rpm", "tpm", "parallel", "budget"
_BUDGET_TTL = 40 * 86400  # past the longest period, for counters created without a seed


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a request is checked against."""

    #: unique counter name; a budget's includes the start of its period, so each period starts at zero
    name: str
    kind: str
    limit: float
    #: who the limit belongs to, for messages: "key 'ci-bot'", "alias 'smart'"
    what: str
    #: budgets: where the period ends, and whether exceeding it only warns
    resets_at: float = 0.0
    budget: BudgetSpec | None = None
    #: how the Redis scripts see it (worked out once, not on every request)
    script_kind: str = field(init=False, repr=False, compare=False)
    script_limit: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "script_kind", "soft" if self.soft else self.kind)
        object.__setattr__(self, "script_limit", repr(float(self.limit)))

    @property
    def soft(self) -> bool:
        return self.budget is not None and not self.budget.hard


@dataclass(slots=True)
class Quota:
    """What `x-ratelimit-*` reports for requests or tokens: the most constraining window."""

    limit: int
    remaining: int
    reset: float


class Grant:
    """What an admitted request holds, to be settled (slots released, tokens reconciled, spend added)."""

    __slots__ = ("checks", "lease", "limiter", "over_soft", "requests", "second", "tokens", "tokens_quota")

    def __init__(self, checks: list[Check], second: int, tokens: int, lease: str, limiter: Limiter | None) -> None:
        self.checks = checks
        self.second = second
        self.tokens = tokens
        self.lease = lease
        self.limiter = limiter
        self.requests: Quota | None = None
        self.tokens_quota: Quota | None = None
        self.over_soft: list[tuple[Check, float]] = []

    def note(self, check: Check, used: float, reset: float) -> None:
        """Record the state of one check after this request was counted."""
        kind = check.kind
        if kind == RPM:
            remaining = int(check.limit - used - 1)
            if self.requests is None or remaining < self.requests.remaining:
                self.requests = Quota(int(check.limit), remaining, reset)
        elif kind == TPM:
            remaining = int(check.limit - used - self.tokens)
            if self.tokens_quota is None or remaining < self.tokens_quota.remaining:
                self.tokens_quota = Quota(int(check.limit), remaining, reset)
        elif kind == BUDGET and check.soft and used >= check.limit:
            self.over_soft.append((check, used))

    async def settle(self, token_delta: int, cost: float) -> None:
        if self.limiter is not None and self.checks:
            await self.limiter.settle(self, token_delta, cost)


class LimitExceeded(RateLimitError):
    """429 naming the limit, with OpenAI's `x-ratelimit-*` headers."""

    # Retrying the same request at once cannot help: the router must not try another deployment for it
    # unless the limit is a deployment's own (see Admission).
    retryable = False

    def __init__(self, message: str, *, code: str, retry_after: float | None, extra: list[tuple[bytes, bytes]]):
        super().__init__(message, code=code, retry_after=retry_after)
        self.extra = extra

    def headers(self) -> list[tuple[bytes, bytes]]:
        return super().headers() + self.extra


def refusal(check: Check, used: float, reset: float, tokens: int, retryable: bool = False) -> LimitExceeded:
    """The 429 for `check`: which limit, how far over, and when it frees up."""
    extra: list[tuple[bytes, bytes]] = []
    if check.kind == RPM:
        message = (
            f"Rate limit reached for {check.what}: {int(check.limit)} requests per minute. Retry in {duration(reset)}."
        )
        code = "rate_limit_exceeded"
        extra = _quota_headers("requests", Quota(int(check.limit), 0, reset))
    elif check.kind == TPM:
        size = (
            f"this request alone needs ~{tokens}, more than the limit"
            if tokens > check.limit
            else f"{int(used)} used, this request needs ~{tokens}"
        )
        message = (
            f"Token rate limit reached for {check.what}: {int(check.limit)} tokens per minute ({size}). "
            f"Retry in {duration(reset)}."
        )
        code = "tokens_rate_limit_exceeded"
        extra = _quota_headers("tokens", Quota(int(check.limit), max(0, int(check.limit - used)), reset))
    elif check.kind == PARALLEL:
        message = (
            f"Too many parallel requests for {check.what}: at most {int(check.limit)} at a time. "
            "Retry when one of them has finished."
        )
        code = "parallel_limit_exceeded"
        reset = 1.0
    else:
        assert check.budget is not None
        message = budget_message(check.what, used, check.budget, check.resets_at)
        code = "budget_exceeded"
        reset = max(check.resets_at - time.time(), 1.0)
    error = LimitExceeded(message, code=code, retry_after=reset, extra=extra)
    error.retryable = retryable
    return error


def quota_headers(grant: Grant) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if grant.requests is not None:
        headers += _quota_headers("requests", grant.requests)
    if grant.tokens_quota is not None:
        headers += _quota_headers("tokens", grant.tokens_quota)
    return headers


_HEADER_NAMES = {
    unit: tuple(f"x-ratelimit-{part}-{unit}".encode() for part in ("limit", "remaining", "reset"))
    for unit in ("requests", "tokens")
}


def _quota_headers(unit: str, quota: Quota) -> list[tuple[bytes, bytes]]:
    limit, remaining, reset = _HEADER_NAMES[unit]
    return [
        (limit, b"%d" % quota.limit),
        (remaining, b"%d" % max(quota.remaining, 0)),
        (reset, duration(quota.reset).encode()),
    ]


def duration(seconds: float) -> str:
    """OpenAI's reset format: `250ms`, `12s`, `1m5s`."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    if seconds < 60:
        return f"{round(seconds)}s"
    return f"{int(seconds // 60)}m{int(seconds % 60)}s"


class Limiter(Protocol):
    async def acquire(self, checks: list[Check], tokens: int, lease: str, retryable: bool = False) -> Grant: ...

    async def settle(self, grant: Grant, token_delta: int, cost: float) -> None: ...

    async def seed_budget(self, check: Check, load: Callable[[], Awaitable[float]]) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class _Window:
    """Counts in one-second buckets, oldest first, with a running total."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.total = 0

    def used(self, second: int) -> int:
        buckets = self.buckets
        while buckets and buckets[0][0] < second - WINDOW:
            self.total -= buckets.popleft()[1]
        return self.total

    def add(self, second: int, amount: int) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += amount
        else:
            buckets.append([second, amount])
        self.total += amount

    def adjust(self, second: int, amount: int) -> None:
        for bucket in reversed(self.buckets):
            if bucket[0] == second:
                bucket[1] += amount
                self.total += amount
                return

    def reset(self, second: int, now: float) -> float:
        oldest = self.buckets[0][0] if self.buckets else second
        return max(oldest + WINDOW + 1 - now, 0.0)


class LocalLimiter:
    """This process's counters. Atomic because nothing in `acquire` awaits."""

    def __init__(self, budget_refresh: float = 30.0) -> None:
        self._windows: dict[str, _Window] = {}
        self._active: dict[str, int] = {}
        self._spent: dict[str, float] = {}
        self._seeded: dict[str, float] = {}
        self._budget_refresh = budget_refresh

    async def acquire(self, checks: list[Check], tokens: int, lease: str, retryable: bool = False) -> Grant:
        return self.acquire_now(checks, tokens, lease, time.time(), retryable)

    def acquire_now(self, checks: list[Check], tokens: int, lease: str, now: float, retryable: bool = False) -> Grant:
        second = int(now)
        grant = Grant(checks, second, tokens, lease, self)
        windows = self._windows
        found: list[float] = []
        # First check everything, then count the request against everything: a refusal counts nowhere.
        for check in checks:
            kind = check.kind
            if kind in (RPM, TPM):
                window = windows.get(check.name)
                if window is None:
                    window = windows[check.name] = _Window()
                used: float = window.used(second)
                if used + (1 if kind == RPM else tokens) > check.limit:
                    raise refusal(check, used, window.reset(second, now), tokens, retryable)
            elif kind == PARALLEL:
                used = self._active.get(check.name, 0)
                if used + 1 > check.limit:
                    raise refusal(check, used, 1.0, tokens, retryable)
            else:
                used = self._spent.get(check.name, 0.0)
                if used >= check.limit and not check.soft:
                    raise refusal(check, used, 0.0, tokens, retryable)
            found.append(used)
        for check, used in zip(checks, found, strict=True):
            kind = check.kind
            if kind in (RPM, TPM):
                window = windows[check.name]
                window.add(second, 1 if kind == RPM else tokens)
                grant.note(check, used, window.reset(second, now))
            else:
                if kind == PARALLEL:
                    self._active[check.name] = int(used) + 1
                grant.note(check, used, 0.0)
        return grant

    async def settle(self, grant: Grant, token_delta: int, cost: float) -> None:
        for check in grant.checks:
            if check.kind == PARALLEL:
                self._active[check.name] = max(self._active.get(check.name, 1) - 1, 0)
            elif check.kind == TPM and token_delta:
                window = self._windows.get(check.name)
                if window is not None:
                    window.adjust(grant.second, token_delta)
            elif check.kind == BUDGET and cost:
                self._spent[check.name] = self._spent.get(check.name, 0.0) + cost

    async def seed_budget(self, check: Check, load: Callable[[], Awaitable[float]]) -> None:
        """Start a budget counter from the spend already in the database, and re-read it now and then
        (other replicas' spend reaches this one only through the database when there is no Redis)."""
        seeded = self._seeded.get(check.name)
        now = time.monotonic()
        if seeded is not None and now - seeded < self._budget_refresh:
            return
        self._seeded[check.name] = now
        stored = await load()
        self._spent[check.name] = max(self._spent.get(check.name, 0.0), stored)

    def spent(self, name: str) -> float:
        return self._spent.get(name, 0.0)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# A window is a hash: one field per second, plus 't' (their total) and 'o' (the oldest second still held), so
# checking it reads two fields instead of sixty-one; seconds that fall out of the window are dropped as they go.
_WINDOW = """
local function window_used(key, sec, window)
  local head = redis.call('HMGET', key, 't', 'o')
  if not head[1] then
    redis.call('DEL', key)  -- nothing, or a hash without a total: start it afresh
    return 0, sec
  end
  local total, oldest = tonumber(head[1]), tonumber(head[2])
  local cutoff = sec - window
  if oldest >= cutoff then return total, oldest end
  if oldest < cutoff - window - 1 then
    redis.call('DEL', key)  -- every second it holds is out of the window
    return 0, sec
  end
  for s = oldest, cutoff - 1 do
    local count = redis.call('HGET', key, s)
    if count then
      total = total - tonumber(count)
      redis.call('HDEL', key, s)
    end
  end
  oldest = cutoff
  while oldest < sec and redis.call('HEXISTS', key, oldest) == 0 do oldest = oldest + 1 end
  redis.call('HSET', key, 't', total, 'o', oldest)
  return total, oldest
end

local function need(kind, tokens)
  if kind == 'rpm' then return 1 end
  return tokens
end
"""

# KEYS: one counter per check. ARGV: tokens, lease id, lease seconds, window, then (kind, limit) per key.
# Returns {1, second, used1, reset1, used2, reset2, ...} or {0, index, used, reset}; numbers as strings
# because Redis truncates Lua numbers to integers on the way out.
_ACQUIRE = (
    _WINDOW
    + """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local tokens = tonumber(ARGV[1])
local lease = ARGV[2]
local lease_s = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local out = {1, tostring(sec)}
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = ARGV[3 + 2 * i]
  local limit = tonumber(ARGV[4 + 2 * i])
  local used, reset = 0, 0
  if kind == 'rpm' or kind == 'tpm' then
    local oldest
    used, oldest = window_used(key, sec, window)
    reset = oldest + window + 1 - now
    if used + need(kind, tokens) > limit then return {0, tostring(i), tostring(used), tostring(reset)} end
  elseif kind == 'parallel' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used = redis.call('ZCARD', key)
    if used + 1 > limit then return {0, tostring(i), tostring(used), '1'} end
  else
    used = tonumber(redis.call('GET', key) or '0')
    if kind == 'budget' and used >= limit then return {0, tostring(i), tostring(used), '0'} end
  end
  out[#out + 1] = tostring(used)
  out[#out + 1] = tostring(reset)
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = ARGV[3 + 2 * i]
  if kind == 'rpm' or kind == 'tpm' then
    local counted = need(kind, tokens)
    redis.call('HINCRBY', key, sec, counted)
    redis.call('HINCRBY', key, 't', counted)
    redis.call('HSETNX', key, 'o', sec)
    redis.call('EXPIRE', key, window + 2)
  elseif kind == 'parallel' then
    redis.call('ZADD', key, now + lease_s, lease)
    redis.call('EXPIRE', key, math.ceil(lease_s) + 1)
  end
end
return out
"""
)

# KEYS: the grant's counters. ARGV: second, lease id, window, budget ttl, token delta, cost, then kind per key.
# A token correction for a second already out of the window has nothing left to correct.
_SETTLE = """
local sec = ARGV[1]
local window = tonumber(ARGV[3])
local delta = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = ARGV[6 + i]
  if kind == 'parallel' then
    redis.call('ZREM', key, ARGV[2])
  elseif kind == 'tpm' and delta ~= 0 then
    if redis.call('HEXISTS', key, sec) == 1 then
      redis.call('HINCRBY', key, sec, delta)
      redis.call('HINCRBY', key, 't', delta)
    end
  elseif (kind == 'budget' or kind == 'soft') and cost > 0 then
    redis.call('INCRBYFLOAT', key, ARGV[6])
    if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[4]) end
  end
end
return 1
"""


class RedisLimiter:
    """Counters shared by every replica. When Redis cannot be reached, `failure` decides: `local` counts
    in this process instead, `open` admits without limits, `closed` refuses with 503."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        failure: str,
        lease_seconds: float,
        budget_refresh: float,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import NoScriptError, RedisError

            from sluicegate.autopipe import AutoPipeline
        except ImportError:
            from sluicegate.errors import ConfigurationError

            raise ConfigurationError(
                "redis_url is set but redis or hiredis is not installed: pip install 'sluicegate[redis]'"
            ) from None
        # No retries: a slow or dead Redis must cost one short timeout, not the client's default ten attempts.
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._pipe = AutoPipeline(self._redis, timeout)
        self._acquire_sha = _sha1(_ACQUIRE)
        self._settle_sha = _sha1(_SETTLE)
        self._no_script = NoScriptError
        self._prefix = prefix
        self._failure = failure
        self._lease_seconds = lease_seconds
        self._budget_refresh = budget_refresh
        self._local = LocalLimiter(budget_refresh)
        self._seeded: dict[str, float] = {}
        self._down_until = 0.0
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

    def _keys(self, checks: list[Check]) -> list[str]:
        prefix = self._prefix
        return [prefix + check.name for check in checks]

    async def acquire(self, checks: list[Check], tokens: int, lease: str, retryable: bool = False) -> Grant:
        if time.monotonic() < self._down_until:
            return self._fallback(checks, tokens, lease, retryable)
        args: list[Any] = [tokens, lease, self._lease_seconds, WINDOW]
        for check in checks:
            args += (check.script_kind, check.script_limit)
        try:
            result = await self._script(self._acquire_sha, self._keys(checks), args)
        except self._errors as exc:
            self._trip(exc)
            return self._fallback(checks, tokens, lease, retryable)
        # Replies are bytes; float() and int() read them as they are.
        if result[0] != 1:
            check = checks[int(result[1]) - 1]
            raise refusal(check, float(result[2]), float(result[3]), tokens, retryable)
        grant = Grant(checks, int(result[1]), tokens, lease, self)
        for index, check in enumerate(checks):
            grant.note(check, float(result[2 + 2 * index]), float(result[3 + 2 * index]))
        return grant

    def _fallback(self, checks: list[Check], tokens: int, lease: str, retryable: bool) -> Grant:
        if self._failure == "closed":
            raise ServiceUnavailableError(
                "The shared rate limiter is unreachable and the gateway is configured to refuse requests "
                "until it is back (governance.redis_failure: closed)",
                code="rate_limiter_unavailable",
                retry_after=1.0,
            )
        if self._failure == "open":
            return Grant([], int(time.time()), tokens, lease, None)
        return self._local.acquire_now(checks, tokens, lease, time.time(), retryable)

    async def settle(self, grant: Grant, token_delta: int, cost: float) -> None:
        if grant.limiter is not self or not _settling_changes_anything(grant.checks, token_delta, cost):
            return
        args: list[Any] = [grant.second, grant.lease, WINDOW, _BUDGET_TTL, token_delta, repr(float(cost))]
        args += [check.script_kind for check in grant.checks]
        try:
            await self._script(self._settle_sha, self._keys(grant.checks), args)
        except self._errors as exc:
            # Slots free themselves when their lease ends; the spend is in the database either way.
            self._trip(exc)

    async def _script(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the scripts by its hash, loading them again if Redis lost them (a restart, a flush)."""
        try:
            return await self._pipe.call("EVALSHA", sha, len(keys), *keys, *args)
        except self._no_script:
            await self._load_scripts()
            return await self._pipe.call("EVALSHA", sha, len(keys), *keys, *args)

    async def _load_scripts(self) -> None:
        await self._redis.script_load(_ACQUIRE)
        await self._redis.script_load(_SETTLE)

    async def seed_budget(self, check: Check, load: Callable[[], Awaitable[float]]) -> None:
        """Create the period's counter from the database's spend if Redis does not have it yet."""
        seeded = self._seeded.get(check.name)
        now = time.monotonic()
        if seeded is not None and now - seeded < self._budget_refresh:
            return
        await self._local.seed_budget(check, load)
        self._seeded[check.name] = now
        if now < self._down_until:
            return
        try:
            expires = int(check.resets_at) + 86400
            await self._redis.set(self._prefix + check.name, repr(self._local.spent(check.name)), nx=True, exat=expires)
        except self._errors as exc:
            self._trip(exc)

    async def start(self) -> None:
        """Connect and load the scripts before the first request, and say early if Redis is not there."""
        try:
            await self._redis.ping()
            await self._load_scripts()
        except self._errors as exc:
            self._trip(exc)

    def _trip(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning(
                "Redis is unreachable (%s); limits are %s for the next second",
                type(exc).__name__,
                {"local": "counted on this replica only", "open": "not enforced", "closed": "refusing requests"}[
                    self._failure
                ],
            )
        self._down_until = time.monotonic() + 1.0

    async def aclose(self) -> None:
        await self._pipe.aclose()
        await self._redis.aclose()


def _settling_changes_anything(checks: list[Check], token_delta: int, cost: float) -> bool:
    """Whether the settle script has work: a slot to free, tokens to correct or spend to add."""
    for check in checks:
        kind = check.kind
        if kind == PARALLEL or (kind == TPM and token_delta) or (kind == BUDGET and cost > 0):
            return True
    return False


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
