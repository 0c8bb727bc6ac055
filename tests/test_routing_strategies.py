"""Load-balancing strategies and per-deployment limits, measured over HTTP with the openai SDK.

Distributions are statistical but seeded (`gateway.router.random`), so they are reproducible; the bounds
are still wide enough (several standard deviations) to hold for any seed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from sluicegate.routing import strategies
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, strategy: str, deployments: list[dict[str, Any]], **routing: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-up", "base_url": fake.base_url + "/v1"}},
        "models": [
            {
                "name": "smart",
                "routing": {"strategy": strategy, **routing},
                "deployments": [{"provider": "oai", **d} for d in deployments],
            }
        ],
    }


def counts(fake: Any) -> Counter[str]:
    return Counter(request.body["model"] for request in fake.requests)


def send(gw: Any, n: int) -> None:
    client = gw.openai()
    for _ in range(n):
        client.chat.completions.create(model="smart", messages=MESSAGES)


async def send_concurrently(gw: Any, n: int, limit: int = 50) -> list[Any]:
    client = gw.async_openai()
    gate = asyncio.Semaphore(limit)

    async def one() -> Any:
        async with gate:
            return await client.chat.completions.create(model="smart", messages=MESSAGES)

    try:
        return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    finally:
        await client.close()


def test_priority_sends_everything_to_the_first_healthy_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "priority", [{"model": "a"}, {"model": "b"}, {"model": "c"}]))
    send(gw, 20)
    assert counts(fake_openai) == {"a": 20}


async def test_weighted_follows_the_weights(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "weighted", [{"model": "a", "weight": 3}, {"model": "b", "weight": 1}]))
    gw.gateway.router.random.seed(20240611)
    answers = await send_concurrently(gw, 400)
    assert not [a for a in answers if isinstance(a, BaseException)]
    share = counts(fake_openai)["a"] / 400
    # Expected 0.75; one standard deviation is ~0.022.
    assert 0.68 <= share <= 0.82, share


def test_weighted_fails_over_to_another_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "weighted", [{"model": "a", "weight": 1}, {"model": "b", "weight": 1}]))
    gw.gateway.router.random.seed(7)
    fake_openai.faults.extend([Fault(status=500), Fault()] * 3)
    send(gw, 3)
    sent = [request.body["model"] for request in fake_openai.requests]
    # Each request failed once, then went to the other deployment.
    assert len(sent) == 6 and all(sent[i] != sent[i + 1] for i in range(0, 6, 2))


def test_round_robin_cycles(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "round-robin", [{"model": "a"}, {"model": "b"}, {"model": "c"}]))
    send(gw, 30)
    assert [request.body["model"] for request in fake_openai.requests] == ["a", "b", "c"] * 10


def test_round_robin_skips_a_deployment_that_is_cooling_down(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "round-robin", [{"model": "a"}, {"model": "b"}, {"model": "c"}]))
    fake_openai.faults.append(Fault(status=429, retry_after=60))
    send(gw, 10)
    sent = counts(fake_openai)
    assert sent["a"] == 1, "rate limited once, then left alone"
    assert sent["b"] + sent["c"] == 10


def test_least_latency_prefers_the_fastest(
    gateway_factory: Any, fake_openai: Any, fake_anthropic: Any, fake_gemini: Any
) -> None:
    gw = gateway_factory(
        {
            "providers": {
                "oai": {"type": "openai", "api_key": "sk", "base_url": fake_openai.base_url + "/v1"},
                "claude": {"type": "anthropic", "api_key": "k", "base_url": fake_anthropic.base_url},
                "gem": {"type": "gemini", "api_key": "k", "base_url": fake_gemini.base_url},
            },
            "models": [
                {
                    "name": "smart",
                    "routing": {"strategy": "least-latency"},
                    "deployments": [
                        {"provider": "oai", "model": "gpt-4o"},
                        {"provider": "claude", "model": "claude-sonnet-4-5"},
                        {"provider": "gem", "model": "gemini-2.5-flash"},
                    ],
                }
            ],
        }
    )
    fake_openai.faults.extend([Fault(delay=0.15)] * 30)
    fake_gemini.faults.extend([Fault(delay=0.08)] * 30)
    client = gw.openai()
    for index in range(24):
        client.chat.completions.create(model="smart", messages=MESSAGES, stream=index % 2 == 1)
    # One request each to learn their latency, then the fastest (Anthropic) takes everything.
    assert (len(fake_openai.requests), len(fake_gemini.requests)) == (1, 1)
    assert len(fake_anthropic.requests) == 22
    latency = {d["id"]: d["latency_ms"] for d in httpx.get(gw.url("/v1/deployments")).json()["data"]}
    assert latency["claude/claude-sonnet-4-5"] < latency["gem/gemini-2.5-flash"] < latency["oai/gpt-4o"]


async def test_least_busy_spreads_concurrent_requests(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "least-busy", [{"model": "a"}, {"model": "b"}, {"model": "c"}]))
    gw.gateway.router.random.seed(11)
    fake_openai.faults.extend([Fault(delay=0.4)] * 30)
    answers = await send_concurrently(gw, 30)
    assert not [a for a in answers if isinstance(a, BaseException)]
    sent = counts(fake_openai)
    assert set(sent) == {"a", "b", "c"} and all(8 <= n <= 12 for n in sent.values()), sent


def test_cost_picks_the_cheapest_then_the_next_cheapest(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(
        config(
            fake_openai,
            "cost",
            [
                {"model": "pricey", "input_price": 5.0, "output_price": 15.0},
                {"model": "unpriced"},
                {"model": "cheap", "input_price": 0.15, "output_price": 0.6},
                {"model": "middle", "input_price": 1.0, "output_price": 2.0},
            ],
        )
    )
    send(gw, 5)
    assert counts(fake_openai) == {"cheap": 5}
    fake_openai.reset()
    fake_openai.faults.extend([Fault(status=503), Fault(status=503)])
    send(gw, 1)
    assert [request.body["model"] for request in fake_openai.requests] == ["cheap", "middle", "pricey"]


def test_cost_uses_the_price_table_for_unpriced_deployments(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(
        config(fake_openai, "cost", [{"model": "listed", "input_price": 1.0, "output_price": 1.0}, {"model": "known"}])
    )
    strategies.set_price_table(lambda d: (0.1, 0.2) if d.model == "known" else None)
    try:
        send(gw, 3)
    finally:
        strategies.set_price_table(None)
    assert counts(fake_openai) == {"known": 3}


# --- per-deployment limits -----------------------------------------------------------------------------


async def test_max_concurrent_spills_over_to_the_next_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "priority", [{"model": "a", "max_concurrent": 2}, {"model": "b"}]))
    fake_openai.faults.extend([Fault(delay=0.4)] * 6)
    answers = await send_concurrently(gw, 6)
    assert not [a for a in answers if isinstance(a, BaseException)]
    assert counts(fake_openai) == {"a": 2, "b": 4}


def test_rpm_limit_skips_a_deployment_for_the_rest_of_the_minute(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "priority", [{"model": "a", "rpm": 3}, {"model": "b"}]))
    send(gw, 5)
    assert [request.body["model"] for request in fake_openai.requests] == ["a", "a", "a", "b", "b"]


def test_tpm_limit_counts_the_tokens_answered(gateway_factory: Any, fake_openai: Any) -> None:
    # The fake answers 18 tokens: after two answers `a` is at 36 >= 30.
    gw = gateway_factory(config(fake_openai, "priority", [{"model": "a", "tpm": 30}, {"model": "b"}]))
    send(gw, 2)
    gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True).response.close()
    send(gw, 1)
    assert [request.body["model"] for request in fake_openai.requests] == ["a", "a", "b", "b"]


def test_every_deployment_saturated_is_429_with_retry_after(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, "priority", [{"model": "a", "rpm": 1}, {"model": "b", "rpm": 1}]))
    send(gw, 2)
    with pytest.raises(openai.RateLimitError) as caught:
        send(gw, 1)
    assert caught.value.code == "deployments_saturated"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(fake_openai.requests) == 2
