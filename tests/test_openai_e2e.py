"""The gateway over HTTP with the official openai SDK, against a fake OpenAI-compatible upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def config(fake: Any, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
        **extra,
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any) -> Any:
    return gateway_factory(config(fake_openai))


def test_chat_answer_usage_and_headers(gw: Any, fake_openai: Any) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello from fake OpenAI."
    assert answer.usage is not None and answer.usage.total_tokens == 18
    assert raw.headers["x-sluicegate-provider"] == "oai/gpt-4o"
    assert raw.headers["x-sluicegate-attempts"] == "1"
    assert len(raw.headers["x-request-id"]) == 32
    sent = fake_openai.requests[-1]
    assert sent.body["model"] == "gpt-4o"
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    assert "stream" not in sent.body


def test_client_request_id_is_echoed_and_forwarded(gw: Any, fake_openai: Any) -> None:
    response = httpx.post(
        gw.url("/v1/chat/completions"),
        json={"model": "smart", "messages": MESSAGES},
        headers={"x-request-id": "job-42.step_7"},
    )
    assert response.headers["x-request-id"] == "job-42.step_7"
    assert fake_openai.requests[-1].headers["x-request-id"] == "job-42.step_7"


def test_unknown_fields_and_sampling_params_pass_through(gw: Any, fake_openai: Any) -> None:
    gw.openai().chat.completions.create(
        model="smart",
        messages=MESSAGES,
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n"],
        seed=7,
        n=1,
        user="u-1",
        response_format={"type": "json_object"},
        extra_body={"vendor_knob": {"depth": 3}},
    )
    sent = fake_openai.requests[-1].body
    assert sent["vendor_knob"] == {"depth": 3}
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (0.2, 0.9, 50, 7)
    assert sent["stop"] == ["\n\n"] and sent["response_format"] == {"type": "json_object"} and sent["user"] == "u-1"


def test_image_content_parts_pass_through(gw: Any, fake_openai: Any) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    gw.openai().chat.completions.create(model="smart", messages=[{"role": "user", "content": content}])
    assert fake_openai.requests[-1].body["messages"][0]["content"] == content


def test_tool_calls(gw: Any) -> None:
    answer = gw.openai().chat.completions.create(
        model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_stream_with_include_usage(gw: Any, fake_openai: Any) -> None:
    stream = gw.openai().chat.completions.create(
        model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake OpenAI."
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18
    assert fake_openai.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_without_include_usage_still_ends_with_usage(gw: Any, fake_openai: Any) -> None:
    chunks = list(gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True))
    assert all(chunk.choices for chunk in chunks), "no empty-choices chunk for clients that did not ask for one"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    # The gateway always asks upstream for usage: it needs it for accounting.
    assert fake_openai.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_tool_call_arguments_reassemble(gw: Any) -> None:
    stream = gw.openai().chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == {"city": "Paris"}


def test_stream_headers(gw: Any) -> None:
    with httpx.stream(
        "POST", gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES, "stream": True}
    ) as r:
        body = r.read().decode()
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["x-sluicegate-provider"] == "oai/gpt-4o"
    assert body.rstrip().endswith("data: [DONE]")


def test_provider_slash_model_without_alias(gw: Any, fake_openai: Any) -> None:
    answer = gw.openai().chat.completions.create(model="oai/gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_models_and_health(gw: Any) -> None:
    assert [m.id for m in gw.openai().models.list()] == ["smart"]
    assert httpx.get(gw.url("/health/liveness")).json() == {"status": "alive"}
    assert httpx.get(gw.url("/health/readiness")).status_code == 200


def test_embeddings(gw: Any, fake_openai: Any) -> None:
    fake_openai_cfg = fake_openai.base_url
    assert fake_openai_cfg
    result = gw.openai().embeddings.create(model="oai/text-embedding-3-small", input=["a", "b"], dimensions=6)
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 6
    assert result.usage.prompt_tokens == 5


# --- errors -------------------------------------------------------------------------------------


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "code"}, body
    return body["error"]


def test_malformed_json_is_400(gw: Any) -> None:
    response = httpx.post(
        gw.url("/v1/chat/completions"),
        content=b'{"model": "smart", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


def test_missing_messages_is_400(gw: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=[])
    assert "messages" in caught.value.message


def test_unknown_model_is_404(gw: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gw.openai().chat.completions.create(model="nope", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


def test_unknown_route_and_wrong_method(gw: Any) -> None:
    assert httpx.get(gw.url("/v2/whatever")).status_code == 404
    response = httpx.get(gw.url("/v1/chat/completions"))
    assert response.status_code == 405 and _error(response)["code"] == "method_not_allowed"


def test_master_key_required(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, master_key="sk-master-123"))
    with pytest.raises(openai.AuthenticationError):
        gw.openai(api_key="wrong").chat.completions.create(model="smart", messages=MESSAGES)
    response = httpx.post(gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES})
    assert response.status_code == 401 and _error(response)["code"] == "missing_api_key"
    assert "sk-master-123" not in response.text
    answer = gw.openai(api_key="sk-master-123").chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content


def test_body_over_limit_is_413(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, server={"max_request_bytes": 1000}))
    big = [{"role": "user", "content": "x" * 2000}]
    response = httpx.post(gw.url("/v1/chat/completions"), json={"model": "smart", "messages": big})
    assert response.status_code == 413 and _error(response)["code"] == "request_too_large"
    assert fake_openai.requests == []


def test_upstream_429_keeps_status_and_retry_after(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(status=429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"
    assert "injected 429" in caught.value.message


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_is_502(gw: Any, fake_openai: Any, status: int) -> None:
    fake_openai.faults.append(Fault(status=status))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 502


def test_upstream_400_is_passed_back(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(status=400))
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert "injected 400" in caught.value.message


def test_upstream_timeout_is_504(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai)
    cfg["providers"]["oai"]["timeout"] = {"first_token": 0.3, "total": 5}
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(delay=1.0))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_malformed_upstream_json_is_502(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(malformed=True))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_malformed_response"


def test_unreachable_upstream_is_502(gateway_factory: Any) -> None:
    gw = gateway_factory(
        {
            "providers": {"dead": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
            "models": [{"name": "smart", "deployments": [{"provider": "dead", "model": "m"}]}],
        }
    )
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_connection_error"


def test_stream_cut_midway_ends_with_error_event(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(cut_after=3))
    stream = gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "content sent before the cut reaches the client"
    assert "cut off" in str(caught.value.message)


def test_stream_error_before_first_chunk_fails_over(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai)
    cfg["models"][0]["deployments"] = [{"provider": "oai", "model": "first"}, {"provider": "oai", "model": "second"}]
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(status=503))
    with httpx.stream(
        "POST", gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES, "stream": True}
    ) as r:
        r.read()
        assert r.status_code == 200
        assert r.headers["x-sluicegate-provider"] == "oai/second"
        assert r.headers["x-sluicegate-attempts"] == "2"


def test_failover_to_next_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai)
    cfg["models"][0]["deployments"] = [{"provider": "oai", "model": "first"}, {"provider": "oai", "model": "second"}]
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(status=500))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["x-sluicegate-provider"] == "oai/second"
    assert [r.body["model"] for r in fake_openai.requests] == ["first", "second"]


def test_no_failover_on_client_error(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai)
    cfg["models"][0]["deployments"] = [{"provider": "oai", "model": "first"}, {"provider": "oai", "model": "second"}]
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(status=400))
    with pytest.raises(openai.BadRequestError):
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert len(fake_openai.requests) == 1


def test_azure_deployment_url_and_key(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(
        {
            "providers": {
                "az": {
                    "type": "azure",
                    "api_key": "az-key",
                    "base_url": fake_openai.base_url,
                    "api_version": "2024-10-21",
                }
            },
            "models": [{"name": "smart", "deployments": [{"provider": "az", "model": "my-gpt4o"}]}],
        }
    )
    answer = gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content
    sent = fake_openai.requests[-1]
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "az-key" and "authorization" not in sent.headers
