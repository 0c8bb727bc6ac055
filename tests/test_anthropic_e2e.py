"""The gateway over HTTP with the official openai SDK, against the fake Anthropic Messages API."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.fakes.anthropic import CACHE_READ_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS, TEXT
from tests.fakes.server import Fault

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER_PARAMETERS},
}


def config(fake: Any, deployments: tuple[str, ...] = ("claude-sonnet-4-5",)) -> dict[str, Any]:
    return {
        "providers": {
            "claude": {
                "type": "anthropic",
                "api_key": "test-key",
                "base_url": fake.base_url,
                "headers": {"anthropic-beta": "test-beta"},
            }
        },
        "models": [{"name": "smart", "deployments": [{"provider": "claude", "model": model} for model in deployments]}],
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_anthropic: Any) -> Any:
    return gateway_factory(config(fake_anthropic))


def _headers(sent: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in sent.headers.items()}


# --- answers ---------------------------------------------------------------------------------------


def test_text_answer_and_upstream_request(gw: Any, fake_anthropic: Any) -> None:
    answer = gw.openai().chat.completions.create(model="smart", messages=MESSAGES, max_tokens=100, stop="END")
    assert answer.choices[0].message.content == TEXT
    assert answer.choices[0].finish_reason == "stop"
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-msg_fake")
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert answer.usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS

    sent = fake_anthropic.requests[-1]
    headers = _headers(sent)
    assert sent.path == "/v1/messages"
    assert headers["x-api-key"] == "test-key" and headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "test-beta" and "x-request-id" in headers
    assert sent.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
    }


def test_cache_reads_count_inside_prompt_tokens(gw: Any) -> None:
    document = {"type": "text", "text": "A long shared document.", "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "system", "content": [document]}, {"role": "user", "content": "Summarise it"}]
    answer = gw.openai().chat.completions.create(model="smart", messages=messages)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens == INPUT_TOKENS + CACHE_READ_TOKENS
    assert answer.usage.prompt_tokens_details.cached_tokens == CACHE_READ_TOKENS


def test_tool_call_round_trip(gw: Any, fake_anthropic: Any) -> None:
    client = gw.openai()
    first = client.chat.completions.create(
        model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content is None and message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("toolu_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    sent = fake_anthropic.requests[-1].body
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_PARAMETERS}
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    history = [
        *MESSAGES,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    second = client.chat.completions.create(model="smart", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == TEXT and second.choices[0].finish_reason == "stop"
    turns = fake_anthropic.requests[-1].body["messages"]
    assert turns[-2] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}],
    }
    assert turns[-1] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}


def test_invalid_tool_arguments_are_refused_before_reaching_anthropic(gw: Any, fake_anthropic: Any) -> None:
    bad_call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}
    history = [*MESSAGES, {"role": "assistant", "tool_calls": [bad_call]}]
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=history, tools=[WEATHER_TOOL])
    assert "messages[2].tool_calls[0].function.arguments is not valid JSON" in caught.value.message
    assert fake_anthropic.requests == []


def test_n_above_one_is_refused(gw: Any, fake_anthropic: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES, n=2)
    assert "`n` must be 1" in caught.value.message
    assert fake_anthropic.requests == []


# --- streams ---------------------------------------------------------------------------------------


def test_stream_text_with_include_usage(gw: Any, fake_anthropic: Any) -> None:
    stream = gw.openai().chat.completions.create(
        model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    # Text arrives in several deltas, not as one block at the end.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == len(TEXT.split(" "))
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert fake_anthropic.requests[-1].body["stream"] is True


def test_stream_without_include_usage_puts_usage_on_the_finish_chunk(gw: Any) -> None:
    chunks = list(gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS


def test_stream_tool_call_deltas_reassemble_to_the_non_streaming_call(gw: Any) -> None:
    client = gw.openai()
    whole = client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL])
    expected = whole.choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True))
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2, "the arguments arrive in several pieces"
    assert {delta.index for delta in deltas} == {0}
    assert deltas[0].type == "function" and deltas[0].function.name == expected.function.name
    arguments = "".join(delta.function.arguments or "" for delta in deltas)
    assert json.loads(arguments) == json.loads(expected.function.arguments) == {"city": "Paris"}
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["tool_calls"]


# --- errors ----------------------------------------------------------------------------------------


def test_429_keeps_status_and_retry_after(gw: Any, fake_anthropic: Any) -> None:
    fake_anthropic.faults.append(Fault(status=429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "3"
    assert "injected 429" in caught.value.message


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_and_overloaded_are_502(gw: Any, fake_anthropic: Any, status: int) -> None:
    fake_anthropic.faults.append(Fault(status=status))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == f"upstream_{status}" and "injected" in caught.value.message


def test_malformed_json_is_502(gw: Any, fake_anthropic: Any) -> None:
    fake_anthropic.faults.append(Fault(malformed=True))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_malformed_response"


def test_overloaded_event_before_any_content_is_502(gw: Any, fake_anthropic: Any) -> None:
    # After message_start and ping, before any content: the error hidden in a 200 must fail the attempt.
    fake_anthropic.faults.append(Fault(error_event_after=2))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_stream_error" and "overloaded_error" in caught.value.message


def test_overloaded_event_before_any_content_fails_over(gateway_factory: Any, fake_anthropic: Any) -> None:
    gw = gateway_factory(config(fake_anthropic, deployments=("claude-first", "claude-second")))
    fake_anthropic.faults.append(Fault(error_event_after=3))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == TEXT
    assert raw.headers["x-sluicegate-provider"] == "claude/claude-second"
    assert [r.body["model"] for r in fake_anthropic.requests] == ["claude-first", "claude-second"]


def test_overloaded_event_after_content_ends_the_stream_with_an_error(gw: Any, fake_anthropic: Any) -> None:
    fake_anthropic.faults.append(Fault(error_event_after=5))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5):
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from "
    assert "overloaded_error" in caught.value.message


def test_stream_cut_before_message_stop_is_an_error_not_a_hang(gw: Any, fake_anthropic: Any) -> None:
    fake_anthropic.faults.append(Fault(cut_after=3))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_incomplete_response"
