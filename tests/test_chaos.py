"""Chaos: a few thousand requests through one alias whose three upstreams misbehave at random.

- the OpenAI fake answers 429 (Retry-After: 1) to half of its requests,
- the Anthropic fake hangs past the first-token timeout (0.5 s) on a third of its requests,
- the Gemini fake drops a third of its streams, before or after the first content.

Every request must end in a success or a well-formed OpenAI error, none may hang, and none may be counted
twice: the usage the gateway records is compared with the answers the fakes actually completed.

    .venv/bin/python -m pytest tests/test_chaos.py -s -q      # prints the success rate
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx
import openai

from tests.fakes.server import Fault
from tests.recording import RecordSink

REQUESTS = 2000
CONCURRENCY = 50
SEED = 3
MESSAGES = [{"role": "user", "content": "Say hello"}]
#: total tokens of one complete answer from each fake (Gemini counts the prompt's two words)
TOKENS = {"oai": 18, "claude": 30, "gem": 2 + 5 + 3}
TEXTS = {"Hello from fake OpenAI.", "Hello from fake Anthropic.", "Hello from fake Gemini."}


def plan_faults(rng: random.Random) -> dict[str, list[Fault]]:
    """The faults each fake will apply, in the order its requests arrive (more than it can receive)."""
    size = REQUESTS * 3
    return {
        "oai": [Fault(status=429, retry_after=1) if rng.random() < 0.5 else Fault() for _ in range(size)],
        "claude": [Fault(delay=1.5) if rng.random() < 0.33 else Fault() for _ in range(size)],
        "gem": [Fault(cut_after=rng.choice((0, 2))) if rng.random() < 0.33 else Fault() for _ in range(size)],
    }


def completed(fault: Fault, streamed: bool) -> bool:
    """Whether the fake delivered a whole answer for a request that met `fault`."""
    if fault.status is not None or fault.delay or fault.malformed:
        return False
    return fault.cut_after is None or not streamed


async def one_request(client: openai.AsyncOpenAI, index: int) -> tuple[str, int]:
    """('ok', tokens the client was told it used), or (the kind of well-formed error, 0).
    Anything else is raised."""
    stream = index % 2 == 1
    try:
        if not stream:
            answer = await client.chat.completions.create(model="chaos", messages=MESSAGES)
            assert answer.choices[0].message.content in TEXTS
            assert answer.usage is not None and answer.usage.total_tokens > 0
            return "ok", answer.usage.total_tokens
        chunks = await client.chat.completions.create(
            model="chaos", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        text, usage = "", None
        async for chunk in chunks:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert text in TEXTS and usage is not None
        return "ok", usage.total_tokens
    except openai.APIStatusError as error:
        body = error.response.json()["error"]
        assert error.status_code in (429, 502, 503, 504), error
        assert {"message", "type", "code"} <= set(body) and body["message"], body
        return f"http {error.status_code} {body['code']}", 0
    except openai.APIError as error:
        # Failed after the stream started: an OpenAI-shaped error event ended it.
        assert not isinstance(error, (openai.APITimeoutError, openai.APIConnectionError)), error
        assert isinstance(error.body, dict) and {"message", "type", "code"} <= set(error.body), error.body
        return f"stream {error.body['code']}", 0


async def test_chaos(gateway_factory: Any, fake_openai: Any, fake_anthropic: Any, fake_gemini: Any) -> None:
    fakes = {"oai": fake_openai, "claude": fake_anthropic, "gem": fake_gemini}
    planned = plan_faults(random.Random(SEED))
    for name, fake in fakes.items():
        fake.faults.extend(planned[name])
    gw = gateway_factory(
        {
            "providers": {
                "oai": {"type": "openai", "api_key": "sk", "base_url": fake_openai.base_url + "/v1"},
                "claude": {"type": "anthropic", "api_key": "k", "base_url": fake_anthropic.base_url},
                "gem": {"type": "gemini", "api_key": "k", "base_url": fake_gemini.base_url},
            },
            "models": [
                {
                    "name": "chaos",
                    "routing": {
                        "strategy": "round-robin",
                        "retries": 1,
                        "backoff": 0.01,
                        "max_backoff": 0.05,
                        "max_retry_after": 0.5,
                        "timeout": {"first_token": 0.5, "total": 10},
                    },
                    "deployments": [
                        {"provider": "oai", "model": "gpt-4o"},
                        {"provider": "claude", "model": "claude-sonnet-4-5"},
                        {"provider": "gem", "model": "gemini-2.5-flash"},
                    ],
                }
            ],
        }
    )
    gw.gateway.router.random.seed(SEED)
    sink = RecordSink()
    gw.gateway.recorder.add(sink)

    client = gw.async_openai(timeout=30, http_client=None)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(index: int) -> tuple[str, int]:
        async with gate:
            # No request may hang: each gets 20 s at most, far beyond its timeouts and retries.
            return await asyncio.wait_for(one_request(client, index), 20)

    began = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(bounded(i) for i in range(REQUESTS)))
    finally:
        await client.close()
    elapsed = time.perf_counter() - began

    deadline = time.monotonic() + 10
    while len(sink.records) < REQUESTS and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    records = sink.records

    # Every request recorded exactly once.
    assert len(records) == REQUESTS
    assert len({record.request_id for record in records}) == REQUESTS

    # The usage recorded is the usage the clients were told about, request for request. Streams cut after
    # their first content may carry a usage the gateway estimated from what passed (governance bills it):
    # those are failed requests, never a second count of an answered one.
    successes = sum(1 for kind, _ in outcomes if kind == "ok")
    reported = [r for r in records if r.usage is not None and not r.usage_estimated]
    assert successes == sum(1 for r in records if r.status == 200) == len(reported)
    assert all(r.status != 200 for r in records if r.usage_estimated)
    assert sum(tokens for _, tokens in outcomes) == sum(r.usage.total_tokens for r in reported if r.usage)

    # ...and it matches the answers the fakes completed, per provider: nothing lost, nothing counted twice.
    for name, fake in fakes.items():
        faults = [planned[name][i] for i in range(len(fake.requests))]
        completed_upstream = sum(completed(f, _streamed(r)) for f, r in zip(faults, fake.requests, strict=True))
        # Under load a healthy answer can still miss the first-token limit: the fake finished it, the gateway
        # had already moved on. Those show up as timeouts beyond the hangs that were injected.
        label = next(d.label for d, _ in gw.gateway.router.deployments() if d.provider.name == name)
        timeouts = sum(1 for r in records for a in r.attempts if a.deployment == label and a.status == 504)
        abandoned = timeouts - sum(1 for f in faults if f.delay)
        answered = [r for r in reported if r.provider == name]
        assert abandoned >= 0, (name, timeouts)
        assert len(answered) == completed_upstream - abandoned, (name, len(answered), completed_upstream, abandoned)
        assert sum(r.usage.total_tokens for r in answered if r.usage) == len(answered) * TOKENS[name], name

    # No deployment is left holding a request.
    health = httpx.get(gw.url("/v1/deployments")).json()["data"]
    assert all(d["in_flight"] == 0 for d in health), health

    errors = Counter(kind for kind, _ in outcomes if kind != "ok")
    attempts = sum(len(r.attempts) for r in records)
    print(
        f"\nchaos: {REQUESTS} requests (half streamed, concurrency {CONCURRENCY}) in {elapsed:.1f}s: "
        f"{successes} succeeded ({successes / REQUESTS:.1%}), {REQUESTS - successes} well-formed errors "
        f"{dict(errors)}; {attempts} upstream attempts; upstream requests "
        f"{ {name: len(fake.requests) for name, fake in fakes.items()} }"
    )
    assert successes / REQUESTS > 0.9


def _streamed(request: Any) -> bool:
    return bool(request.body.get("stream")) or "streamGenerateContent" in request.path
