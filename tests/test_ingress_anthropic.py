"""Anthropic Messages ingress: golden converter pairs, then the official anthropic SDK -> gateway -> fake
OpenAI and fake Gemini, streaming and errors included."""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import httpx
import msgspec
import pytest

from sluicegate.errors import InvalidRequestError, RateLimitError
from sluicegate.ingress import anthropic_messages as am
from tests.fakes.server import Fault

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


# --- golden: request ---------------------------------------------------------------------------------


def test_request_golden() -> None:
    body = {
        "model": "smart",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in the picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }
    assert am.chat_request(body) == {
        "model": "smart",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in the picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 256,
        "temperature": 0.3,
        "stop": ["END"],
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER_SCHEMA},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_tool_result_error_and_images_in_results() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_9",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "not found"},
                            {"type": "image", "source": {"type": "url", "url": "https://x.test/s.png"}},
                        ],
                    }
                ],
            }
        ],
    }
    assert am.chat_request(body)["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_9", "content": "[tool error] not found"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/s.png"}}]},
    ]


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "enabled", "budget_tokens": 60000}, "high"),
        ({"type": "adaptive"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_thinking_budget_becomes_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    request = am.chat_request(
        {"model": "m", "max_tokens": 64000, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking}
    )
    assert request.get("reasoning_effort") == effort
    # Reasoning models take max_completion_tokens, which counts the thinking as Anthropic's max_tokens does.
    assert request.get("max_completion_tokens" if effort else "max_tokens") == 64000


def test_output_config_effort_and_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = am.chat_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": schema}},
        }
    )
    assert request["reasoning_effort"] == "high"
    assert request["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "at least one message"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "'user' or 'assistant'"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "server tools",
        ),
    ],
)
def test_invalid_requests_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        am.chat_request(body)


# --- golden: answer ----------------------------------------------------------------------------------


def test_message_response_golden() -> None:
    completion = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "reasoning_content": "The user wants weather.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }
    assert am.message_response(completion, "smart") == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 100,
            "output_tokens_details": {"thinking_tokens": 12},
        },
    }


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return msgspec.json.encode(
        {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [choice]}
    )


def test_stream_encoder_golden_with_thinking_text_and_tool_calls() -> None:
    encoder = am.StreamEncoder("smart")
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "Think"}),
        _chunk({"content": "Hi"}),
        _chunk({"content": " there"}),
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
        msgspec.json.encode(
            {"id": "chatcmpl-s1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}
        ),
    ]
    raw = b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()
    events = _events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["id"] == "msg_s1" and events[0][1]["message"]["model"] == "gpt-4o"
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert events[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Think"}
    assert [e[1]["delta"]["text"] for e in events[5:7]] == ["Hi", " there"]
    assert events[8][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    assert [e[1]["delta"] for e in events[9:11]] == [
        {"type": "input_json_delta", "partial_json": '{"x":'},
        {"type": "input_json_delta", "partial_json": "1}"},
    ]
    assert events[12][1]["index"] == 3 and events[12][1]["content_block"]["name"] == "g"
    assert events[15][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 9,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_count_tokens_estimate() -> None:
    body = {"model": "m", "system": "x" * 40, "messages": [{"role": "user", "content": "y" * 40}]}
    assert am.count_tokens(body) == {"input_tokens": 20}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG * 100}}
    with_image = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    assert am.count_tokens(with_image)["input_tokens"] == 1600


def test_error_shape() -> None:
    assert am.error_body(RateLimitError("slow down")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }


# --- the anthropic SDK against the gateway ---------------------------------------------------------------


def _config(providers: dict[str, Any], deployments: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "providers": providers,
        "models": [{"name": "claude-gw", "deployments": [{"provider": p, "model": m} for p, m in deployments]}],
        **extra,
    }


def _openai_provider(fake: Any) -> dict[str, Any]:
    return {"type": "openai", "api_key": "sk-up", "base_url": fake.base_url + "/v1"}


@pytest.fixture
def via_openai(gateway_factory: Any, fake_openai: Any) -> Any:
    return gateway_factory(_config({"oai": _openai_provider(fake_openai)}, [("oai", "gpt-4o")]))


@pytest.fixture
def via_gemini(gateway_factory: Any, fake_gemini: Any) -> Any:
    provider = {"type": "gemini", "api_key": "g-key", "base_url": fake_gemini.base_url}
    return gateway_factory(_config({"gem": provider}, [("gem", "gemini-2.5-flash")]))


def client(gw: Any, api_key: str = "test-key") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=api_key, max_retries=0)


def test_sdk_text_with_system_and_stop_sequences_via_openai(via_openai: Any, fake_openai: Any) -> None:
    raw = client(via_openai).messages.with_raw_response.create(
        model="claude-gw",
        max_tokens=100,
        system="Be brief.",
        stop_sequences=["END"],
        messages=[{"role": "user", "content": "Say hello"}],
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "Hello from fake OpenAI."
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert raw.headers["x-sluicegate-provider"] == "oai/gpt-4o"
    sent = fake_openai.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert sent["stop"] == ["END"] and sent["max_tokens"] == 100 and sent["model"] == "gpt-4o"


def test_sdk_tool_round_trip_via_openai(via_openai: Any, fake_openai: Any) -> None:
    sdk = client(via_openai)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.messages.create(model="claude-gw", max_tokens=100, tools=[WEATHER_TOOL], messages=messages)
    assert first.stop_reason == "tool_use"
    use = first.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]},
    ]
    second = sdk.messages.create(model="claude-gw", max_tokens=100, tools=[WEATHER_TOOL], messages=messages)
    assert second.content[0].type == "text" and second.stop_reason == "end_turn"
    sent = fake_openai.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == use.id and json.loads(
        sent[-2]["tool_calls"][0]["function"]["arguments"]
    ) == {"city": "Paris"}
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "18C"}


def test_sdk_stream_text_via_openai(via_openai: Any) -> None:
    with client(via_openai).messages.stream(
        model="claude-gw", max_tokens=100, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == "Hello from fake OpenAI."
    assert final.content[0].text == "Hello from fake OpenAI." and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)


def test_sdk_stream_tool_input_deltas_via_openai(via_openai: Any) -> None:
    sdk = client(via_openai)
    events = list(
        sdk.messages.create(
            model="claude-gw",
            max_tokens=100,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather?"}],
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    pieces = [
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(pieces) > 2 and json.loads("".join(pieces)) == {"city": "Paris"}
    with sdk.messages.stream(
        model="claude-gw", max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


def test_sdk_image_via_openai(via_openai: Any, fake_openai: Any) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    client(via_openai).messages.create(
        model="claude-gw",
        max_tokens=50,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}],
    )
    content = fake_openai.requests[-1].body["messages"][0]["content"]
    assert content == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "What is it?"},
    ]


def test_sdk_count_tokens(via_openai: Any, fake_openai: Any) -> None:
    counted = client(via_openai).messages.count_tokens(
        model="claude-gw", system="s" * 20, messages=[{"role": "user", "content": "u" * 20}]
    )
    assert counted.input_tokens == 10
    assert fake_openai.requests == []
    with pytest.raises(anthropic.NotFoundError):
        client(via_openai).messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])


def test_sdk_text_tools_and_stream_via_gemini(via_gemini: Any, fake_gemini: Any) -> None:
    sdk = client(via_gemini)
    text = sdk.messages.create(
        model="claude-gw",
        max_tokens=100,
        system="Be brief.",
        stop_sequences=["END"],
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert text.content[0].text == "Hello from fake Gemini." and text.stop_reason == "end_turn"
    sent = fake_gemini.requests[-1].body
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["generationConfig"]["stopSequences"] == ["END"] and sent["generationConfig"]["maxOutputTokens"] == 100
    # Gemini counts thinking apart; the Anthropic answer counts it inside output_tokens.
    assert text.usage.output_tokens == 8 and text.usage.output_tokens_details.thinking_tokens == 3

    tool = sdk.messages.create(
        model="claude-gw", max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]
    )
    assert tool.stop_reason == "tool_use" and tool.content[0].input == {"city": "Paris"}

    with sdk.messages.stream(
        model="claude-gw", max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
    with sdk.messages.stream(model="claude-gw", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == "Hello from fake Gemini."


def test_sdk_image_and_thinking_via_gemini(via_gemini: Any, fake_gemini: Any) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    client(via_gemini).messages.create(
        model="claude-gw",
        max_tokens=20000,
        thinking={"type": "enabled", "budget_tokens": 5000},
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}],
    )
    sent = fake_gemini.requests[-1].body
    assert sent["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 4096, "includeThoughts": True}


# --- errors in Anthropic's shape ---------------------------------------------------------------------------


def test_errors_raise_the_sdk_exception_classes(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(_config({"oai": _openai_provider(fake_openai)}, [("oai", "gpt-4o")], master_key="sk-master"))
    hello = [{"role": "user", "content": "Hello"}]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(gw, api_key="wrong").messages.create(model="claude-gw", max_tokens=5, messages=hello)
    assert auth.value.body["type"] == "error" and auth.value.body["error"]["type"] == "authentication_error"
    good = client(gw, api_key="sk-master")
    with pytest.raises(anthropic.NotFoundError):
        good.messages.create(model="no-such-model", max_tokens=5, messages=hello)
    fake_openai.faults.append(Fault(status=429, retry_after=2))
    with pytest.raises(anthropic.RateLimitError) as limited:
        good.messages.create(model="claude-gw", max_tokens=5, messages=hello)
    assert limited.value.response.headers["retry-after"] == "2"
    response = httpx.post(
        gw.url("/v1/messages"),
        json={"model": "claude-gw", "messages": hello},
        headers={"authorization": "Bearer sk-master"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: a positive integer is required"},
    }


def test_error_after_the_stream_started_is_an_error_event(via_openai: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(error_event_after=3))
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in client(via_openai).messages.create(
            model="claude-gw", max_tokens=5, messages=[{"role": "user", "content": "Hi"}], stream=True
        ):
            received.append(event.type)
    assert received[:2] == ["message_start", "content_block_start"]
    assert "injected mid-stream failure" in str(caught.value)


def test_failover_applies_to_anthropic_clients(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(_config({"oai": _openai_provider(fake_openai)}, [("oai", "gpt-first"), ("oai", "gpt-second")]))
    fake_openai.faults.append(Fault(status=500))
    raw = client(gw).messages.with_raw_response.create(
        model="claude-gw", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.parse().content[0].text == "Hello from fake OpenAI."
    assert raw.headers["x-sluicegate-provider"] == "oai/gpt-second" and raw.headers["x-sluicegate-attempts"] == "2"
    fake_openai.faults.append(Fault(status=500))
    with client(gw).messages.stream(
        model="claude-gw", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        assert "".join(stream.text_stream) == "Hello from fake OpenAI."
    assert [r.body["model"] for r in fake_openai.requests] == ["gpt-first", "gpt-second", "gpt-first", "gpt-second"]
