"""Responses API ingress: golden converter pairs, then the official openai SDK's `client.responses` ->
gateway -> fake Anthropic and fake Bedrock, streaming and tool calls included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import openai
import pytest

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.ingress import responses as rs
from tests.fakes import anthropic as fake_anthropic_module
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.server import Fault

WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": WEATHER_PARAMETERS,
}


# --- golden: request ---------------------------------------------------------------------------------


def test_request_golden() -> None:
    body = {
        "model": "smart",
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "21C"}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 300,
        "temperature": 0.2,
        "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "store": True,
        "stream": True,
    }
    assert rs.chat_request(body) == {
        "model": "smart",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "21C"},
        ],
        "max_completion_tokens": 300,
        "reasoning_effort": "low",
        "temperature": 0.2,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER_PARAMETERS,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "input": "hi", "previous_response_id": "resp_1"}, "stateless"),
        ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "built-in tools"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "item_reference"),
        ({"model": "m"}, "'input' is required"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "file_id"),
    ],
)
def test_unsupported_requests_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        rs.chat_request(body)


# --- golden: answer ----------------------------------------------------------------------------------


def test_response_golden() -> None:
    completion = {
        "id": "chatcmpl-42",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Paris is sunny.",
                    "reasoning_content": "Look it up.",
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 20,
            "total_tokens": 70,
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }
    body = {"model": "smart", "input": "hi", "tools": [WEATHER_TOOL]}
    answer = rs.from_chat_completion(completion, body, created_at=1700000000)
    assert answer["id"] == "resp_42" and answer["object"] == "response" and answer["status"] == "completed"
    assert answer["created_at"] == 1700000000 and answer["model"] == "smart" and answer["tools"] == [WEATHER_TOOL]
    assert answer["output"] == [
        {"type": "reasoning", "id": "rs_42_0", "summary": [{"type": "summary_text", "text": "Look it up."}]},
        {
            "type": "message",
            "id": "msg_42_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris is sunny.", "annotations": [], "logprobs": []}],
        },
        {
            "type": "function_call",
            "id": "fc_42_2",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
    ]
    assert answer["usage"] == {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 70,
    }
    truncated = {**completion, "choices": [{**completion["choices"][0], "finish_reason": "length"}]}
    cut = rs.from_chat_completion(truncated, body)
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return msgspec.json.encode({"id": "chatcmpl-7", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert event["type"] == name.removeprefix("event: ")
            events.append(event)
    return events


def test_stream_encoder_golden() -> None:
    encoder = rs.StreamEncoder({"model": "smart", "input": "hi"}, created_at=1)
    raw = (
        b"".join(
            encoder.feed(chunk)
            for chunk in [
                _chunk({"role": "assistant", "content": "Hel"}),
                _chunk({"content": "lo"}),
                _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                _chunk({}, "tool_calls"),
                msgspec.json.encode(
                    {"id": "chatcmpl-7", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
                ),
            ]
        )
        + encoder.finish()
    )
    events = _events(raw)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["id"] == "resp_7" and events[0]["response"]["status"] == "in_progress"
    assert events[6]["text"] == "Hello" and events[6]["item_id"] == "msg_7_0"
    assert events[9]["item"] == {
        "type": "function_call",
        "id": "fc_7_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
        "status": "in_progress",
    }
    assert events[12]["arguments"] == '{"a":1}' and events[12]["output_index"] == 1
    final = events[-1]["response"]
    assert final["status"] == "completed" and [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["usage"]["total_tokens"] == 5


def test_stream_error_events() -> None:
    encoder = rs.StreamEncoder({"model": "smart", "input": "hi"})
    encoder.feed(_chunk({"content": "x"}))
    events = _events(encoder.error(UpstreamError("boom", code="upstream_stream_error")))
    assert (
        events[0]["type"] == "error" and events[0]["message"] == "boom" and events[0]["code"] == "upstream_stream_error"
    )
    assert events[1]["type"] == "response.failed" and events[1]["response"]["error"]["message"] == "boom"


# --- the openai SDK's Responses API against the gateway -----------------------------------------------------


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock().start()
    yield fake
    fake.stop()


def _config(fake_anthropic: Any, fake_bedrock: FakeBedrock) -> dict[str, Any]:
    return {
        "providers": {
            "claude": {"type": "anthropic", "api_key": "a-key", "base_url": fake_anthropic.base_url},
            "aws": {"type": "bedrock", "base_url": fake_bedrock.base_url, "aws": fake_bedrock.credentials()},
        },
        "models": [
            {"name": "via-anthropic", "deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
            {"name": "via-bedrock", "deployments": [{"provider": "aws", "model": "anthropic.claude-sonnet-4-5-v1:0"}]},
        ],
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_anthropic: Any, fake_bedrock: FakeBedrock) -> Any:
    fake_bedrock.reset()
    return gateway_factory(_config(fake_anthropic, fake_bedrock))


ALIASES = ["via-anthropic", "via-bedrock"]


@pytest.mark.parametrize("alias", ALIASES)
def test_sdk_text(gw: Any, alias: str) -> None:
    response = gw.openai().responses.create(
        model=alias, instructions="Be brief.", input="Say hello", max_output_tokens=100
    )
    assert response.status == "completed" and response.object == "response"
    assert response.output_text in (fake_anthropic_module.TEXT, FakeBedrock.TEXT)
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_sdk_text_reaches_anthropic_as_messages(gw: Any, fake_anthropic: Any) -> None:
    gw.openai().responses.create(
        model="via-anthropic", instructions="Be brief.", input="Say hello", max_output_tokens=100
    )
    sent = fake_anthropic.requests[-1].body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]
    assert sent["max_tokens"] == 100


@pytest.mark.parametrize("alias", ALIASES)
def test_sdk_function_call_round_trip(gw: Any, alias: str) -> None:
    client = gw.openai()
    first = client.responses.create(model=alias, input="Weather in Paris?", tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    history: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"},
    ]
    second = client.responses.create(model=alias, input=history, tools=[WEATHER_TOOL])
    assert second.output_text in (fake_anthropic_module.TEXT, FakeBedrock.TEXT)
    assert not [item for item in second.output if item.type == "function_call"]


@pytest.mark.parametrize("alias", ALIASES)
def test_sdk_stream_text_events(gw: Any, alias: str) -> None:
    events = list(gw.openai().responses.create(model=alias, input="Say hello", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) in (fake_anthropic_module.TEXT, FakeBedrock.TEXT)
    completed = events[-1].response
    assert completed.output_text == "".join(deltas) and completed.usage is not None and completed.usage.total_tokens > 0


@pytest.mark.parametrize("alias", ALIASES)
def test_sdk_stream_helper_with_function_call(gw: Any, alias: str) -> None:
    with gw.openai().responses.stream(model=alias, input="Weather?", tools=[WEATHER_TOOL]) as stream:
        argument_deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert len(argument_deltas) > 1 and json.loads("".join(argument_deltas)) == {"city": "Paris"}
    call = final.output[-1]
    assert (
        call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    )


def test_errors_are_openai_shaped(gw: Any, fake_anthropic: Any) -> None:
    client = gw.openai()
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="missing", input="hi")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="via-anthropic", input="hi", previous_response_id="resp_1")
    assert "stateless" in refused.value.message
    fake_anthropic.faults.append(Fault(status=429, retry_after=1))
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="via-anthropic", input="hi")


def test_error_after_the_stream_started(gw: Any, fake_anthropic: Any) -> None:
    fake_anthropic.faults.append(Fault(error_event_after=5))
    events = list(gw.openai().responses.create(model="via-anthropic", input="Say hello", stream=True))
    assert events[-2].type == "error" and "overloaded_error" in events[-2].message
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"


def test_bedrock_exception_frame_before_content_fails_over(
    gateway_factory: Any, fake_anthropic: Any, fake_bedrock: FakeBedrock
) -> None:
    config = _config(fake_anthropic, fake_bedrock)
    config["models"] = [
        {
            "name": "mixed",
            "deployments": [
                {"provider": "aws", "model": "anthropic.claude-sonnet-4-5-v1:0"},
                {"provider": "claude", "model": "claude-sonnet-4-5"},
            ],
        }
    ]
    gw = gateway_factory(config)
    fake_bedrock.reset()
    fake_bedrock.faults.append(Fault(error_event_after=1))
    raw = gw.openai().responses.with_raw_response.create(model="mixed", input="Say hello", stream=True)
    events = list(raw.parse())
    assert events[-1].type == "response.completed" and events[-1].response.output_text == fake_anthropic_module.TEXT
    assert raw.headers["x-sluicegate-provider"] == "claude/claude-sonnet-4-5"
