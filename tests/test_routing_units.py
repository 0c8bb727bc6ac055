"""Routing's pure parts with plain inputs: error classification, backoff, strategies, the breaker, streams."""

from __future__ import annotations

import random
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from sluicegate.config import ConfigError, config_from_dict
from sluicegate.errors import (
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
    UpstreamRequestError,
    UpstreamTimeoutError,
    error_from_upstream,
)
from sluicegate.providers.base import Timeouts
from sluicegate.routing import retry
from sluicegate.routing.config import CooldownConfig
from sluicegate.routing.health import Block, Health, Lease
from sluicegate.routing.overrides import read_overrides
from sluicegate.routing.router import Deployment
from sluicegate.routing.strategies import Cheapest, LeastBusy, RoundRobin, Weighted, deployment_price
from sluicegate.routing.streams import GuardedStream, is_preamble, read_head

RETRY_ON = frozenset({408, 429, 500, 502, 503, 504, 529})


def deployment(model: str = "m", **knobs: Any) -> Deployment:
    provider: Any = SimpleNamespace(name="p")
    return Deployment(provider, model, Timeouts(), **knobs)


# --- classification -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "retried"),
    [
        (error_from_upstream(429, "slow down", 2.0), 429, True),
        (error_from_upstream(500, "boom"), 500, True),
        (error_from_upstream(529, "overloaded"), 529, True),
        (error_from_upstream(401, "bad key"), 401, False),
        (error_from_upstream(400, "bad request"), 400, False),
        (error_from_upstream(404, "no such model"), 404, False),
        (UpstreamTimeoutError("slow"), 504, True),
        (UpstreamError("cut off", code="upstream_incomplete_response"), 502, True),
        (UpstreamError("no route", code="upstream_connection_error"), 502, True),
        (InvalidRequestError("n must be 1"), 400, False),
    ],
)
def test_upstream_status_and_may_retry(error: Any, status: int, retried: bool) -> None:
    assert retry.upstream_status(error) == status
    assert retry.may_retry(error, RETRY_ON) is retried


def test_client_errors_are_never_retried_even_when_listed() -> None:
    assert not retry.may_retry(error_from_upstream(400, "bad"), frozenset({400, 500}))


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130001 tokens.",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ],
)
def test_context_window_refusals_of_each_provider(message: str) -> None:
    error = UpstreamRequestError(message)
    assert retry.special_kind(error) == retry.CONTEXT_WINDOW
    assert retry.recoded(error, retry.CONTEXT_WINDOW).code == "context_length_exceeded"


@pytest.mark.parametrize(
    "message",
    [
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "Your request was rejected as a result of our safety system.",
    ],
)
def test_content_policy_refusals(message: str) -> None:
    assert retry.special_kind(UpstreamRequestError(message)) == retry.CONTENT_POLICY


def test_other_refusals_and_failures_are_not_special() -> None:
    assert retry.special_kind(UpstreamRequestError("Invalid value for 'temperature'")) is None
    assert retry.special_kind(UpstreamError("maximum context length")) is None


def test_backoff_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 4.0)]:
        delays = [retry.backoff_delay(attempt, 0.5, 4.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8, "full jitter spreads up to the ceiling"


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    rng = random.Random(1)
    assert retry.retry_wait(RateLimitError("x", retry_after=3.0), 0, 0.5, 8, 10, rng) == 3.0
    assert retry.retry_wait(RateLimitError("x", retry_after=30.0), 0, 0.5, 8, 10, rng) is None
    assert 0 <= (retry.retry_wait(RateLimitError("x"), 0, 0.5, 8, 10, rng) or 0) <= 0.5


# --- strategies ---------------------------------------------------------------------------------------


def test_weighted_first_choice_follows_the_weights() -> None:
    a, b, c = deployment("a", weight=6), deployment("b", weight=3), deployment("c", weight=1)
    strategy = Weighted(random.Random(42))
    first = Counter(strategy.order([a, b, c])[0].model for _ in range(20_000))
    assert abs(first["a"] / 20_000 - 0.6) < 0.015
    assert abs(first["b"] / 20_000 - 0.3) < 0.015
    assert abs(first["c"] / 20_000 - 0.1) < 0.01


def test_round_robin_rotates_the_start() -> None:
    deployments = [deployment("a"), deployment("b"), deployment("c")]
    strategy = RoundRobin()
    starts = [strategy.order(deployments)[0].model for _ in range(6)]
    assert starts == ["a", "b", "c", "a", "b", "c"]
    assert [d.model for d in strategy.order(deployments)] == ["a", "b", "c"]


def test_least_busy_orders_by_in_flight() -> None:
    a, b, c = deployment("a"), deployment("b"), deployment("c")
    a.stats.in_flight, b.stats.in_flight, c.stats.in_flight = 3, 0, 1
    assert [d.model for d in LeastBusy(random.Random(0)).order([a, b, c])] == ["b", "c", "a"]


def test_cheapest_puts_unpriced_last() -> None:
    a = deployment("a", prices=(2.5, 10.0))
    b = deployment("b")
    c = deployment("c", prices=(0.15, 0.6))
    assert [d.model for d in Cheapest().order([a, b, c])] == ["c", "a", "b"]
    assert deployment_price(c) == (0.15, 0.6) and deployment_price(b) is None


# --- the breaker --------------------------------------------------------------------------------------


def take(health: Health, d: Deployment) -> Lease:
    lease = health.acquire(d)
    assert isinstance(lease, Lease), lease
    return lease


def test_breaker_opens_after_the_threshold_and_probes_after_the_cooldown() -> None:
    health = Health()
    d = deployment(cooldown=CooldownConfig(failures=3, duration=0.2, min_error_rate=0.5))
    for _ in range(3):
        take(health, d).fail(UpstreamError("boom"), 5.0)
    blocked = health.acquire(d)
    assert isinstance(blocked, Block) and blocked.reason == "failing" and 0 < blocked.retry_after <= 0.2
    time.sleep(0.25)
    probe = take(health, d)
    assert probe.probe
    assert isinstance(health.acquire(d), Block), "one probe at a time"
    probe.succeed(12.0)
    assert health.store.get(d.label) is None
    assert not take(health, d).probe


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    health = Health()
    d = deployment(cooldown=CooldownConfig(failures=1, duration=0.1))
    take(health, d).fail(UpstreamError("boom"), 5.0)
    time.sleep(0.15)
    take(health, d).release()
    assert take(health, d).probe


def test_a_rate_limit_with_retry_after_cools_down_for_that_long() -> None:
    health = Health()
    d = deployment()
    take(health, d).fail(RateLimitError("slow down", retry_after=42.0), 5.0)
    blocked = health.acquire(d)
    assert isinstance(blocked, Block) and blocked.reason == "rate-limited" and 41 < blocked.retry_after <= 42


def test_leases_settle_once_and_track_in_flight() -> None:
    health = Health()
    d = deployment(max_concurrent=2)
    first, second = take(health, d), take(health, d)
    assert isinstance(health.acquire(d), Block)
    first.succeed(10.0)
    first.fail(UpstreamError("late"), 1.0)
    assert d.stats.in_flight == 1 and d.stats.failures_total == 0
    second.release()
    assert d.stats.in_flight == 0 and d.stats.requests_total == 1


def test_latency_is_a_moving_average_and_timeouts_count_as_slow() -> None:
    health = Health()
    d = deployment()
    take(health, d).succeed(100.0)
    take(health, d).succeed(200.0)
    assert d.stats.ewma_ms == pytest.approx(130.0)
    take(health, d).fail(UpstreamTimeoutError("slow"), 1000.0)
    assert d.stats.ewma_ms == pytest.approx(130.0 + 0.3 * 870.0)


# --- streams --------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return msgspec.json.encode({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_preamble_detection() -> None:
    assert is_preamble(chunk({"role": "assistant", "content": ""}))
    assert is_preamble(chunk({"role": "assistant", "content": None, "refusal": None}))
    assert not is_preamble(chunk({"role": "assistant", "content": "Hi"}))
    assert not is_preamble(chunk({"tool_calls": [{"index": 0, "id": "c1"}]}))
    assert not is_preamble(chunk({}, finish="stop"))
    assert not is_preamble(b'{"choices":[],"usage":{"prompt_tokens":1}}')
    assert not is_preamble(b"not json")


async def iterate(chunks: list[bytes]) -> Any:
    for item in chunks:
        yield item


async def test_read_head_holds_the_role_chunk_back_until_content() -> None:
    role, hello, rest = chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop")
    assert await read_head(iterate([role, hello, rest]), 5.0) == [role, hello]
    with pytest.raises(UpstreamError, match="empty"):
        await read_head(iterate([]), 5.0)
    assert await read_head(iterate([role]), 5.0) == [role]


def test_guarded_stream_dropped_without_closing_releases_its_lease() -> None:
    health = Health()
    d = deployment()
    GuardedStream([], iterate([]), take(health, d), inter_chunk=None, count_tokens=False)
    assert d.stats.in_flight == 0


async def test_guarded_stream_settles_its_lease_even_when_never_iterated() -> None:
    health = Health()
    d = deployment()
    lease = take(health, d)
    stream = GuardedStream([], iterate([b"x"]), lease, inter_chunk=None, count_tokens=False)
    await stream.aclose()
    assert lease.settled and d.stats.in_flight == 0


# --- config and overrides -------------------------------------------------------------------------------


def base_config(**model: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "base_url": "http://x/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "m"}], **model}],
    }


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"routing": {"strategy": "fastest"}}, "at models[0].routing.strategy"),
        ({"routing": {"retries": -1}}, "at models[0].routing.retries"),
        ({"routing": {"cooldown": {"duration": 0}}}, "at models[0].routing.cooldown.duration"),
        ({"routing": {"timeout": {"inter_chunk": "soon"}}}, "at models[0].routing.timeout.inter_chunk"),
        ({"routing": {"retry_on": [200]}}, "at models[0].routing.retry_on[0]"),
        ({"routing": {"context_window_fallbacks": ["smart"]}}, "cannot fall back to itself"),
        ({"deployments": [{"provider": "oai", "model": "m", "weight": 0}]}, "at models[0].deployments[0].weight"),
        ({"deployments": [{"provider": "oai", "model": "m", "max_concurrent": 0}]}, "max_concurrent"),
    ],
)
def test_config_mistakes_are_reported_with_their_path(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(base_config(**model))


def test_the_issue_example_config_loads() -> None:
    config = config_from_dict(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": "http://x/v1"},
                "claude": {"type": "anthropic", "base_url": "http://y"},
            },
            "models": [
                {
                    "name": "smart",
                    "routing": {
                        "strategy": "least-latency",
                        "retries": 2,
                        "timeout": {"connect": 2, "first_token": 10, "total": 60},
                    },
                    "fallbacks": ["cheap"],
                    "deployments": [
                        {"provider": "openai", "model": "gpt-4o", "weight": 3, "max_concurrent": 50},
                        {"provider": "claude", "model": "claude-sonnet-4-5", "weight": 1},
                    ],
                },
                {"name": "cheap", "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
            ],
        }
    )
    assert config.models[0].routing.timeout.first_token == 10
    assert config.models[0].deployments[0].max_concurrent == 50


def test_overrides_are_read_only_when_present() -> None:
    assert read_overrides({"model": "m"}, {}, 0.0) is None
    assert read_overrides({"model": "m"}, {"cache-control": "no-cache"}, 0.0) is None
    overrides = read_overrides(
        {"model": "m", "fallbacks": ["a"]}, {"x-sluicegate-timeout": "2.5", "x-sluicegate-retries": "3"}, 10.0
    )
    assert overrides is not None
    assert (overrides.deadline, overrides.retries, overrides.fallbacks) == (12.5, 3, ["a"])
    header = read_overrides({"model": "m"}, {"x-sluicegate-fallbacks": "a, b"}, 0.0)
    assert header is not None and header.fallbacks == ["a", "b"]
    for bad in ({"timeout": -1}, {"timeout": True}, {"num_retries": 1.5}, {"num_retries": 11}, {"fallbacks": [1]}):
        with pytest.raises(InvalidRequestError):
            read_overrides({"model": "m", **bad}, {}, 0.0)
