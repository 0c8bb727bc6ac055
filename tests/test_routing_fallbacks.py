"""Fallback chains across providers (OpenAI fake -> Anthropic fake -> Gemini fake, translation included), the
context-window and content-policy chains, and per-request fallbacks, over HTTP with the openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic import TEXT as CLAUDE_TEXT
from tests.fakes.openai import TEXT as OPENAI_TEXT
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]
GEMINI_TEXT = "Hello from fake Gemini."
CONTEXT_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9100 tokens. "
    "Please reduce the length of the messages."
)
POLICY_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry."
)


def config(fake_openai: Any, fake_anthropic: Any, fake_gemini: Any, **primary: Any) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {"type": "openai", "api_key": "sk", "base_url": fake_openai.base_url + "/v1"},
            "claude": {"type": "anthropic", "api_key": "k", "base_url": fake_anthropic.base_url},
            "gem": {"type": "gemini", "api_key": "k", "base_url": fake_gemini.base_url},
        },
        "models": [
            {
                "name": "smart",
                "deployments": [{"provider": "oai", "model": "gpt-4o"}],
                "fallbacks": ["claude", "gemini"],
                **primary,
            },
            {"name": "claude", "deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
            {"name": "gemini", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
            {"name": "long", "deployments": [{"provider": "gem", "model": "gemini-2.5-pro"}]},
            {"name": "lenient", "deployments": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
        ],
    }


@pytest.fixture
def fakes(fake_openai: Any, fake_anthropic: Any, fake_gemini: Any) -> tuple[Any, Any, Any]:
    return fake_openai, fake_anthropic, fake_gemini


def start(gateway_factory: Any, fakes: tuple[Any, Any, Any], **primary: Any) -> Any:
    return gateway_factory(config(*fakes, **primary))


def stream_text(chunks: Any) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def test_alias_fallbacks_cross_providers(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, fake_gemini = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(status=500))
    fake_anthropic.faults.append(Fault(status=529))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    answer = raw.parse()
    assert answer.choices[0].message.content == GEMINI_TEXT
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert raw.headers["x-sluicegate-provider"] == "gem/gemini-2.5-flash"
    assert raw.headers["x-sluicegate-attempts"] == "3"
    assert raw.headers["x-sluicegate-failed-attempts"] == (
        "oai/gpt-4o:500:upstream_500, claude/claude-sonnet-4-5:529:upstream_529"
    )
    # Each upstream got the request in its own dialect.
    assert fake_anthropic.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}
    ]
    assert fake_gemini.requests[0].body["contents"][0]["parts"] == [{"text": "Say hello"}]


def test_alias_fallbacks_cross_providers_while_streaming(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _fake_gemini = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(error_event_after=1))
    # Anthropic: 200, message_start, ping, then an overloaded_error event (an error hidden in a 200).
    fake_anthropic.faults.append(Fault(error_event_after=2))
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert stream_text(chunks) == GEMINI_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert raw.headers["x-sluicegate-provider"] == "gem/gemini-2.5-flash"
    assert raw.headers["x-sluicegate-failed-attempts"] == (
        "oai/gpt-4o:502:upstream_stream_error, claude/claude-sonnet-4-5:502:upstream_stream_error"
    )


def test_first_fallback_answers_and_the_rest_are_not_asked(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, _fake_anthropic, fake_gemini = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(delay=0.1, status=503))
    answer = gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content == CLAUDE_TEXT
    assert fake_gemini.requests == []


def test_a_client_error_does_not_fall_back(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, fake_gemini = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(status=400, message="Invalid value for 'temperature'"))
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert "temperature" in caught.value.message
    assert fake_anthropic.requests == [] and fake_gemini.requests == []


def test_context_window_exceeded_uses_its_own_chain(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _fake_gemini = fakes
    gw = start(gateway_factory, fakes, routing={"context_window_fallbacks": ["long"]})
    fake_openai.faults.append(Fault(status=400, message=CONTEXT_MESSAGE))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == GEMINI_TEXT
    assert raw.headers["x-sluicegate-provider"] == "gem/gemini-2.5-pro"
    # The ordinary fallbacks are for failures, not for a prompt that does not fit: Claude was not asked.
    assert fake_anthropic.requests == []


def test_context_window_exceeded_without_a_chain_is_400_with_openais_code(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _ = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(status=400, message=CONTEXT_MESSAGE))
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.code == "context_length_exceeded"
    assert fake_anthropic.requests == []


def test_context_window_chain_that_is_also_too_small_ends_with_the_refusal(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, _, fake_gemini = fakes
    gw = start(gateway_factory, fakes, routing={"context_window_fallbacks": ["long"]})
    fake_openai.faults.append(Fault(status=400, message=CONTEXT_MESSAGE))
    fake_gemini.faults.append(
        Fault(status=400, message="The input token count (1200000) exceeds the maximum number of tokens allowed")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.code == "context_length_exceeded"
    assert len(fake_gemini.requests) == 1


def test_content_policy_refusal_uses_its_own_chain(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, fake_gemini = fakes
    gw = start(gateway_factory, fakes, routing={"content_policy_fallbacks": ["lenient"]})
    fake_openai.faults.append(Fault(status=400, message=POLICY_MESSAGE))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert stream_text(raw.parse()) == CLAUDE_TEXT
    assert raw.headers["x-sluicegate-provider"] == "claude/claude-haiku-4-5"
    assert [request.body["model"] for request in fake_anthropic.requests] == ["claude-haiku-4-5"]
    assert fake_gemini.requests == []


def test_request_fallbacks_in_the_body_replace_the_aliases(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _fake_gemini = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(status=500))
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, extra_body={"fallbacks": ["gemini"]}
    )
    assert raw.parse().choices[0].message.content == GEMINI_TEXT
    assert fake_anthropic.requests == []
    assert "fallbacks" not in fake_openai.requests[0].body, "gateway-only fields never reach a provider"


def test_request_fallbacks_in_a_header(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _ = fakes
    gw = start(gateway_factory, fakes, fallbacks=[])
    fake_openai.faults.append(Fault(status=500))
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, extra_headers={"x-sluicegate-fallbacks": "claude/claude-opus-4-1"}
    )
    assert raw.headers["x-sluicegate-provider"] == "claude/claude-opus-4-1"
    assert fake_anthropic.requests[0].body["model"] == "claude-opus-4-1"


def test_request_can_switch_fallbacks_off(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, fake_anthropic, _ = fakes
    gw = start(gateway_factory, fakes)
    fake_openai.faults.append(Fault(status=500))
    with pytest.raises(openai.InternalServerError):
        gw.openai().chat.completions.create(
            model="smart", messages=MESSAGES, extra_headers={"x-sluicegate-fallbacks": "none"}
        )
    assert fake_anthropic.requests == []


def test_unknown_request_fallback_is_400(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, *_ = fakes
    gw = start(gateway_factory, fakes)
    response = httpx.post(
        gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES, "fallbacks": ["nope"]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "fallbacks"
    assert fake_openai.requests == []


def test_a_deployment_already_tried_is_not_asked_again_by_a_fallback(gateway_factory: Any, fakes: Any) -> None:
    fake_openai, _fake_anthropic, _ = fakes
    gw = start(gateway_factory, fakes, fallbacks=["oai/gpt-4o", "claude"])
    fake_openai.faults.append(Fault(status=500))
    answer = gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content == CLAUDE_TEXT
    assert len(fake_openai.requests) == 1


def test_unknown_fallback_alias_in_the_config_is_a_config_error(fakes: Any) -> None:
    from sluicegate.config import ConfigError, config_from_dict

    cfg = config(*fakes)
    cfg["models"][0]["fallbacks"] = ["claude", "nope"]
    with pytest.raises(ConfigError, match=r"models\[0\]\.fallbacks\[1\]: unknown alias 'nope'"):
        config_from_dict(cfg)


def test_openai_answer_when_nothing_fails(gateway_factory: Any, fakes: Any) -> None:
    gw = start(gateway_factory, fakes)
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == OPENAI_TEXT
    assert raw.headers["x-sluicegate-attempts"] == "1"
    assert "x-sluicegate-failed-attempts" not in raw.headers
