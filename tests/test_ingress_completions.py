"""Legacy `/v1/completions`: golden converter pairs, then the openai SDK's `client.completions` through the
gateway to the fake OpenAI and the fake Anthropic."""

from __future__ import annotations

from typing import Any

import msgspec
import openai
import pytest

from sluicegate.errors import InvalidRequestError
from sluicegate.ingress import completions
from tests.fakes.anthropic import TEXT as ANTHROPIC_TEXT


def test_request_golden() -> None:
    body = {
        "model": "m",
        "prompt": ["Say hi"],
        "max_tokens": 7,
        "temperature": 0.1,
        "stop": ["\n"],
        "n": 1,
        "stream": True,
        "best_of": 1,
    }
    assert completions.chat_request(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 7,
        "temperature": 0.1,
        "n": 1,
        "stop": ["\n"],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"prompt": ["a", "b"]}, "one non-empty string"),
        ({"prompt": [1, 2, 3]}, "one non-empty string"),
        ({"suffix": "x"}, "suffix"),
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
    ],
)
def test_refusals(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        completions.chat_request({"model": "m", "prompt": "p", **extra})


def test_response_and_chunk_golden() -> None:
    completion = {
        "id": "chatcmpl-9",
        "created": 5,
        "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    assert completions.completion_response(completion) == {
        "id": "cmpl-9",
        "object": "text_completion",
        "created": 5,
        "model": "gpt",
        "choices": [{"text": "Hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    chunk = msgspec.json.encode(
        {
            "id": "chatcmpl-9",
            "created": 5,
            "model": "gpt",
            "choices": [{"index": 0, "delta": {"content": "H"}, "finish_reason": None}],
        }
    )
    assert msgspec.json.decode(completions.completion_chunk(chunk))["choices"] == [
        {"text": "H", "index": 0, "logprobs": None, "finish_reason": None}
    ]


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any, fake_anthropic: Any) -> Any:
    return gateway_factory(
        {
            "providers": {
                "oai": {"type": "openai", "api_key": "sk", "base_url": fake_openai.base_url + "/v1"},
                "claude": {"type": "anthropic", "api_key": "a", "base_url": fake_anthropic.base_url},
            },
            "models": [
                {"name": "instruct", "deployments": [{"provider": "oai", "model": "gpt-3.5-turbo-instruct"}]},
                {"name": "claude", "deployments": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
            ],
        }
    )


def test_sdk_completion(gw: Any, fake_openai: Any) -> None:
    raw = gw.openai().completions.with_raw_response.create(model="instruct", prompt="Say hello", max_tokens=20)
    answer = raw.parse()
    assert answer.object == "text_completion" and answer.choices[0].text == "Hello from fake OpenAI."
    assert answer.choices[0].finish_reason == "stop" and answer.usage is not None and answer.usage.total_tokens == 18
    assert raw.headers["x-sluicegate-provider"] == "oai/gpt-3.5-turbo-instruct"
    assert fake_openai.requests[-1].body["messages"] == [{"role": "user", "content": "Say hello"}]


def test_sdk_stream_to_anthropic(gw: Any) -> None:
    chunks = list(gw.openai().completions.create(model="claude", prompt="Say hello", max_tokens=20, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ANTHROPIC_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is not None


def test_sdk_refusal_is_openai_shaped(gw: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().completions.create(model="instruct", prompt="x", echo=True)
    assert caught.value.code == "invalid_request" and "echo" in caught.value.message
