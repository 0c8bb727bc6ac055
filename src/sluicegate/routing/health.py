"""Deployment health: the circuit breaker, recent error rate and latency, in-flight requests, RPM/TPM.

Two kinds of state, kept apart on purpose:

- the breaker (open / half-open, until when, why) lives behind `HealthStore`, so replicas can share it
  later (a Redis store that mirrors states locally and publishes transitions); it is written only on
  transitions, and read with one lookup per candidate;
- counters (in flight, error window, latency EWMA, per-minute usage) are this process's own view and
  live on `DeploymentStats`, one per `provider/model` label, shared by every alias that lists it.

A request takes a `Lease` on a deployment for each attempt and settles it exactly once: success, failure,
or release (cancelled, or refused for a reason that says nothing about the deployment's health).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sluicegate.errors import GatewayError, RateLimitError, UpstreamTimeoutError

if TYPE_CHECKING:
    from sluicegate.routing.router import Deployment

#: breaker reasons
FAILING = "failing"
RATE_LIMITED = "rate-limited"
#: limit reasons (local counters, never shared)
SATURATED = "saturated"

#: weight of the newest latency sample in the moving average
_EWMA_ALPHA = 0.3
#: a latency older than this no longer ranks the deployment: it is tried again to get a fresh sample
LATENCY_TTL = 60.0
#: Retry-After given to requests that find a half-open probe in flight
_PROBE_RETRY_AFTER = 1.0
#: a probe that has not settled after this long was lost (its replica died): another request may probe
_PROBE_LOST = 30.0
#: cooldowns end this much early, so a request that slept exactly the Retry-After it was given gets through
_GRACE = 0.05


@dataclass(slots=True)
class BreakerState:
    """A deployment taken out of rotation. Absent from the store means closed (in rotation)."""

    reason: str
    #: wall-clock time (time.time()) when the deployment may be probed again; wall clock so replicas agree
    until: float
    #: a half-open probe request is in flight
    probing: bool = False
    probe_started: float = 0.0

    def state(self, now: float) -> str:
        if now < self.until:
            return "open"
        return "half-open"


class HealthStore(Protocol):
    """Where breaker states live. Synchronous on purpose: the router reads it for every candidate."""

    def get(self, key: str) -> BreakerState | None: ...

    def put(self, key: str, state: BreakerState | None) -> None:
        """Store a transition; None closes the breaker."""
        ...


class MemoryHealthStore:
    """Breaker states of this process only."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}

    def get(self, key: str) -> BreakerState | None:
        return self._states.get(key)

    def put(self, key: str, state: BreakerState | None) -> None:
        if state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = state


class DeploymentStats:
    """This process's counters for one deployment (one `provider/model` label)."""

    __slots__ = (
        "_cur_failures",
        "_cur_requests",
        "_minute_start",
        "_prev_failures",
        "_prev_requests",
        "_window_start",
        "ewma_ms",
        "failures_total",
        "in_flight",
        "last_error",
        "last_error_at",
        "minute_requests",
        "minute_tokens",
        "requests_total",
        "sampled_at",
        "window",
    )

    def __init__(self, window: float) -> None:
        self.window = window
        self.in_flight = 0
        self.ewma_ms: float | None = None
        self.sampled_at = 0.0
        self.requests_total = 0
        self.failures_total = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        now = time.perf_counter()
        self._window_start = now
        self._cur_requests = self._cur_failures = 0
        self._prev_requests = self._prev_failures = 0
        self._minute_start = now
        self.minute_requests = 0
        self.minute_tokens = 0

    # --- error window: a sliding estimate from two fixed buckets -----------------------------------

    def _rotate(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed < self.window:
            return
        if elapsed < 2 * self.window:
            self._prev_requests, self._prev_failures = self._cur_requests, self._cur_failures
            self._window_start += self.window
        else:
            self._prev_requests = self._prev_failures = 0
            self._window_start = now
        self._cur_requests = self._cur_failures = 0

    def recent(self, now: float | None = None) -> tuple[float, float]:
        """(attempts, failures) over roughly the last `window` seconds."""
        now = time.perf_counter() if now is None else now
        self._rotate(now)
        share = max(0.0, 1.0 - (now - self._window_start) / self.window)
        return (
            self._cur_requests + self._prev_requests * share,
            self._cur_failures + self._prev_failures * share,
        )

    def succeeded(self, now: float, latency_ms: float | None) -> None:
        """One attempt answered: the common case, kept to a few attribute updates."""
        self.in_flight -= 1
        if now - self._window_start >= self.window:
            self._rotate(now)
        self._cur_requests += 1
        self.requests_total += 1
        if latency_ms is not None:
            ewma = self.ewma_ms
            self.ewma_ms = latency_ms if ewma is None else ewma + _EWMA_ALPHA * (latency_ms - ewma)
            self.sampled_at = now

    def failed(self, now: float) -> None:
        self.in_flight -= 1
        self._rotate(now)
        self._cur_requests += 1
        self.requests_total += 1
        self._cur_failures += 1
        self.failures_total += 1

    def clear_window(self) -> None:
        self._cur_requests = self._cur_failures = self._prev_requests = self._prev_failures = 0

    def sample_latency(self, now: float, ms: float) -> None:
        ewma = self.ewma_ms
        self.ewma_ms = ms if ewma is None else ewma + _EWMA_ALPHA * (ms - ewma)
        self.sampled_at = now

    def latency_rank(self, now: float) -> float:
        """The EWMA for `least-latency`; 0 (try it first) when unknown or stale."""
        ewma = self.ewma_ms
        if ewma is None or now - self.sampled_at > LATENCY_TTL:
            return 0.0
        return ewma

    # --- per-minute usage, for rpm / tpm --------------------------------------------------------

    def minute(self, now: float) -> float:
        """Seconds left in the current minute, rolling it over when it is done."""
        left = self._minute_start + 60.0 - now
        if left <= 0:
            self._minute_start = now
            self.minute_requests = self.minute_tokens = 0
            return 60.0
        return left


@dataclass(slots=True)
class Block:
    """Why a deployment cannot take this request now, and when it may again."""

    reason: str
    retry_after: float


class Lease:
    """One attempt's hold on a deployment; settled exactly once."""

    __slots__ = ("_health", "deployment", "probe", "settled")

    def __init__(self, health: Health, deployment: Deployment, probe: bool) -> None:
        self._health = health
        self.deployment = deployment
        self.probe = probe
        self.settled = False

    def succeed(self, latency_ms: float | None, now: float | None = None, tokens: int = 0) -> None:
        """The attempt answered (for a stream: the stream ended well) after `latency_ms` (None: already
        sampled at the first token); `now` is time.perf_counter() when the caller already read it."""
        if self.settled:
            return
        self.settled = True
        self.deployment.stats.succeeded(time.perf_counter() if now is None else now, latency_ms)
        if self.probe or tokens:
            self._health.succeeded(self, tokens)

    def fail(self, error: GatewayError, latency_ms: float | None) -> None:
        """The attempt failed; `latency_ms` is sampled for timeouts (None after a stream's first token)."""
        if self.settled:
            return
        self.settled = True
        self._health.failed(self, error, latency_ms)

    def release(self) -> None:
        if self.settled:
            return
        self.settled = True
        self._health.released(self)

    def first_token(self, latency_ms: float) -> None:
        """A stream's first content: its latency sample, before the stream is settled at its end."""
        self.deployment.stats.sample_latency(time.perf_counter(), latency_ms)


class Health:
    """Decides whether a deployment may take a request, and learns from how each attempt went."""

    def __init__(self, store: HealthStore | None = None) -> None:
        self.store: HealthStore = store if store is not None else MemoryHealthStore()

    def acquire(self, deployment: Deployment) -> Lease | Block:
        """A lease when the deployment is in rotation and under its limits; otherwise why not."""
        probe = False
        state = self.store.get(deployment.label)
        if state is not None:
            now = time.time()
            if now < state.until - _GRACE:
                return Block(state.reason, state.until - now)
            if state.probing and now - state.probe_started < _PROBE_LOST:
                return Block(state.reason, _PROBE_RETRY_AFTER)
            # Cooldown over: this request is the half-open probe; the others keep away until it answers.
            state.probing = True
            state.probe_started = now
            self.store.put(deployment.label, state)
            probe = True
        stats = deployment.stats
        if deployment.limited:
            block = _limit_block(deployment, stats)
            if block is not None:
                if probe:
                    self._unprobe(deployment)
                return block
            stats.minute_requests += 1
        stats.in_flight += 1
        return Lease(self, deployment, probe)

    def succeeded(self, lease: Lease, tokens: int) -> None:
        """What a success means beyond the counters: tokens for tpm, and closing the breaker after a probe."""
        deployment = lease.deployment
        stats = deployment.stats
        now = time.perf_counter()
        if tokens and deployment.tpm is not None:
            stats.minute(now)
            stats.minute_tokens += tokens
        if lease.probe:
            # The probe answered: back in rotation with a clean slate.
            stats.clear_window()
            self.store.put(deployment.label, None)

    def failed(self, lease: Lease, error: GatewayError, latency_ms: float | None) -> None:
        deployment = lease.deployment
        stats = deployment.stats
        now = time.perf_counter()
        stats.failed(now)
        stats.last_error = error.code
        stats.last_error_at = time.time()
        if latency_ms is not None and isinstance(error, UpstreamTimeoutError):
            # A timeout is the slowest answer of all: least-latency must see it.
            stats.sample_latency(now, latency_ms)
        cooldown = deployment.cooldown
        if (
            cooldown.on_rate_limit
            and isinstance(error, RateLimitError)
            and error.retry_after is not None
            and error.retry_after > 0
        ):
            self._open(deployment, RATE_LIMITED, min(error.retry_after, cooldown.max_duration))
            return
        if lease.probe:
            self._open(deployment, FAILING, cooldown.duration)
            return
        if cooldown.failures:
            attempts, failures = stats.recent(now)
            if failures >= cooldown.failures and failures >= cooldown.min_error_rate * attempts:
                self._open(deployment, FAILING, cooldown.duration)

    def released(self, lease: Lease) -> None:
        lease.deployment.stats.in_flight -= 1
        if lease.probe:
            self._unprobe(lease.deployment)

    def _open(self, deployment: Deployment, reason: str, seconds: float) -> None:
        deployment.stats.clear_window()
        self.store.put(deployment.label, BreakerState(reason, time.time() + seconds))

    def _unprobe(self, deployment: Deployment) -> None:
        # The probe ended without a verdict (cancelled, or refused for the client's sake): let the next
        # request probe instead.
        state = self.store.get(deployment.label)
        if state is not None:
            state.probing = False
            self.store.put(deployment.label, state)

    def snapshot(self, deployment: Deployment) -> dict[str, Any]:
        """What `GET /v1/deployments` shows for one deployment."""
        stats = deployment.stats
        now = time.perf_counter()
        attempts, failures = stats.recent(now)
        state = self.store.get(deployment.label)
        wall = time.time()
        left = stats.minute(now)
        return {
            "state": "closed" if state is None else state.state(wall),
            "reason": None if state is None else state.reason,
            "cooldown_remaining_s": 0.0 if state is None else round(max(0.0, state.until - wall), 3),
            "in_flight": stats.in_flight,
            "recent_requests": round(attempts, 1),
            "recent_error_rate": round(failures / attempts, 4) if attempts else 0.0,
            "latency_ms": None if stats.ewma_ms is None else round(stats.ewma_ms, 2),
            "requests_total": stats.requests_total,
            "failures_total": stats.failures_total,
            "last_error": stats.last_error,
            "last_error_at": stats.last_error_at,
            "limits": {
                "max_concurrent": deployment.max_concurrent,
                "rpm": deployment.rpm,
                "tpm": deployment.tpm,
                "requests_this_minute": stats.minute_requests,
                "tokens_this_minute": stats.minute_tokens,
                "minute_resets_in_s": round(left, 3),
            },
        }


def _limit_block(deployment: Deployment, stats: DeploymentStats) -> Block | None:
    if deployment.max_concurrent is not None and stats.in_flight >= deployment.max_concurrent:
        return Block(SATURATED, 1.0)
    if deployment.rpm is None and deployment.tpm is None:
        return None
    left = stats.minute(time.perf_counter())
    if deployment.rpm is not None and stats.minute_requests >= deployment.rpm:
        return Block(SATURATED, left)
    if deployment.tpm is not None and stats.minute_tokens >= deployment.tpm:
        return Block(SATURATED, left)
    return None
