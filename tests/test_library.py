"""The library: the same core as the server, called in-process, blocking and async, streaming and not."""

from __future__ import annotations

from typing import Any

import pytest

import sluicegate
from sluicegate.errors import NotFoundError, RateLimitError
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def configured(fake_openai: Any) -> Any:
    gateway = sluicegate.configure(
        {
            "providers": {"oai": {"type": "openai", "api_key": "k", "base_url": fake_openai.base_url + "/v1"}},
            "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
        }
    )
    yield gateway
    sluicegate.configure({"providers": {"demo": {"type": "demo"}}})


def test_blocking_completion(configured: Any) -> None:
    answer = sluicegate.completion(model="smart", messages=MESSAGES, temperature=0)
    assert answer["choices"][0]["message"]["content"] == "Hello from fake OpenAI."
    assert answer["usage"]["total_tokens"] == 18


def test_blocking_stream(configured: Any) -> None:
    chunks = list(sluicegate.completion(model="smart", messages=MESSAGES, stream=True))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello from fake OpenAI."
    assert chunks[-1]["usage"]["total_tokens"] == 18


async def test_async_completion_and_stream(configured: Any) -> None:
    answer = await sluicegate.acompletion(model="smart", messages=MESSAGES)
    assert answer["choices"][0]["message"]["content"] == "Hello from fake OpenAI."
    stream = await sluicegate.acompletion(
        model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7


def test_errors_are_gateway_errors(configured: Any, fake_openai: Any) -> None:
    with pytest.raises(NotFoundError):
        sluicegate.completion(model="missing", messages=MESSAGES)
    fake_openai.faults.append(Fault(status=429, retry_after=3))
    with pytest.raises(RateLimitError) as caught:
        sluicegate.completion(model="smart", messages=MESSAGES)
    assert caught.value.retry_after == 3


def test_embedding(configured: Any) -> None:
    result = sluicegate.embedding(model="oai/text-embedding-3-small", input="hello")
    assert result["data"][0]["index"] == 0 and len(result["data"][0]["embedding"]) == 4


def test_demo_provider_is_deterministic() -> None:
    sluicegate.configure(
        {
            "providers": {"d": {"type": "demo"}},
            "models": [{"name": "demo", "deployments": [{"provider": "d", "model": "demo-1"}]}],
        }
    )
    first = sluicegate.completion(model="demo", messages=MESSAGES)
    second = sluicegate.completion(model="demo", messages=MESSAGES)
    assert first["choices"] == second["choices"] and first["id"] == second["id"]
    streamed = "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in sluicegate.completion(model="demo", messages=MESSAGES, stream=True)
    )
    assert streamed == first["choices"][0]["message"]["content"]
