"""Golden input/output pairs for the Anthropic converters and the stream translator (pure, no sockets)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.anthropic.chat import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    JSON_SCHEMA_INSTRUCTION,
    chat_request,
    chat_response,
    finish_reason,
    tool_choice,
    usage_from_anthropic,
)
from sluicegate.providers.anthropic.stream import StreamTranslator
from sluicegate.providers.base import Usage
from tests.fakes.anthropic import answer, stream_events

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# --- request ---------------------------------------------------------------------------------------


def test_full_request_golden() -> None:
    request = {
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert chat_request(request, "claude-sonnet-4-5", stream=True) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Weather in Paris?"}]}
        ],
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "tools": [ANTHROPIC_WEATHER_TOOL],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stream": True,
    }


def test_minimal_request_defaults_max_tokens_and_sends_nothing_extra() -> None:
    body = chat_request({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]}, "claude-haiku-4-5")
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert DEFAULT_MAX_TOKENS == 4096


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert chat_request({"messages": messages, "max_tokens": 50}, "m")["max_tokens"] == 50
    assert chat_request({"messages": messages, "max_tokens": 50, "max_completion_tokens": 70}, "m")["max_tokens"] == 70


def test_tool_round_trip_history_golden() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
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
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "Which is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
    }
    assert chat_request(request, "m")["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


def test_assistant_text_next_to_tool_calls_is_kept_and_empty_text_dropped() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": ""},
        {"role": "assistant", "content": ""},
    ]
    assert chat_request({"messages": messages}, "m")["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "c", "name": "f", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}]},
    ]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_bad_tool_call_arguments_are_a_clear_invalid_request(arguments: str, expected: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]}]
    with pytest.raises(InvalidRequestError, match=expected) as caught:
        chat_request({"messages": messages}, "m")
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    assert tool_choice(choice, parallel) == expected


def test_tool_choice_without_tools_is_left_out() -> None:
    body = chat_request({"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "none"}, "m")
    assert "tool_choice" not in body and "tools" not in body


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    tool = {"type": "function", "function": {"name": "now"}}
    body = chat_request({"messages": [{"role": "user", "content": "t?"}], "tools": [tool]}, "m")
    assert body["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_images_data_url_and_http_url() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    body = chat_request({"messages": [{"role": "user", "content": content}]}, "m")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,rawbytes", "ftp://example.com/cat.jpg"])
def test_unusable_image_urls_are_refused(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(InvalidRequestError, match="image") as caught:
        chat_request({"messages": [{"role": "user", "content": content}]}, "m")
    assert caught.value.param == "messages[0].content[0]"


def test_unsupported_content_part_and_role_are_refused() -> None:
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    with pytest.raises(InvalidRequestError, match="input_audio"):
        chat_request({"messages": [{"role": "user", "content": audio}]}, "m")
    with pytest.raises(InvalidRequestError, match="function"):
        chat_request({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "m")


def test_stop_list_and_temperature_clamped() -> None:
    body = chat_request({"messages": [{"role": "user", "content": "Hi"}], "stop": ["a", "b"], "temperature": 1.7}, "m")
    assert body["stop_sequences"] == ["a", "b"]
    assert body["temperature"] == 1.0


def test_n_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat_request({"messages": [{"role": "user", "content": "Hi"}], "n": 2}, "m")
    assert caught.value.param == "n"
    assert chat_request({"messages": [{"role": "user", "content": "Hi"}], "n": 1}, "m")["messages"]


def test_response_format_json_object_is_an_instruction_after_the_system_prompt() -> None:
    request = {
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_object"},
    }
    assert chat_request(request, "m")["system"] == [
        {"type": "text", "text": "Be kind."},
        {"type": "text", "text": JSON_OBJECT_INSTRUCTION},
    ]


def test_response_format_json_schema_puts_the_schema_in_the_instruction() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    request = {
        "messages": [{"role": "user", "content": "2+2?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}},
    }
    (instruction,) = chat_request(request, "m")["system"]
    assert instruction["text"].startswith(JSON_SCHEMA_INSTRUCTION)
    assert json.loads(instruction["text"].removeprefix(JSON_SCHEMA_INSTRUCTION)) == schema


def test_cache_control_on_a_part_is_passed_through() -> None:
    part = {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral"}}
    request = {"messages": [{"role": "system", "content": [part]}, {"role": "user", "content": "Summarise"}]}
    assert chat_request(request, "m")["system"] == [
        {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral"}}
    ]


def test_reasoning_effort_enables_thinking_within_the_token_limit() -> None:
    messages = [{"role": "user", "content": "Think"}]
    body = chat_request({"messages": messages, "reasoning_effort": "medium"}, "m")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS + 4096
    assert "thinking" not in chat_request({"messages": messages, "reasoning_effort": "minimal"}, "m")
    with pytest.raises(InvalidRequestError, match="max_completion_tokens"):
        chat_request({"messages": messages, "reasoning_effort": "high", "max_completion_tokens": 1000}, "m")


def test_request_is_not_mutated() -> None:
    request = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "b"},
        ],
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": False,
    }
    before = copy.deepcopy(request)
    chat_request(request, "m")
    chat_request(request, "m", stream=True)
    assert request == before


# --- response --------------------------------------------------------------------------------------


def test_text_response_golden() -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 3,
        },
    }
    assert chat_response(message, created=1700000000) == {
        "id": "chatcmpl-msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 115,
            "completion_tokens": 3,
            "total_tokens": 118,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 5},
        },
    }


def test_tool_use_and_thinking_response_golden() -> None:
    message = {
        "id": "msg_02",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "User wants weather.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 50, "output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}},
    }
    assert chat_response(message, created=1)["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "reasoning_content": "User wants weather.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert chat_response(message, created=1)["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}


def test_empty_answer_has_empty_string_content() -> None:
    message = {"id": "m", "model": "x", "content": [], "stop_reason": "end_turn", "usage": {}}
    assert chat_response(message, created=1)["choices"][0]["message"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("some_future_reason", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cache_reads_and_writes_inside_the_prompt() -> None:
    usage = usage_from_anthropic(
        {"input_tokens": 7, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 100, "output_tokens": 30}
    )
    assert usage == Usage(
        prompt_tokens=1007, completion_tokens=30, total_tokens=1037, cached_tokens=900, cache_creation_tokens=100
    )
    assert usage_from_anthropic({"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": None}) == Usage(
        3, 4, 7
    )


# --- stream ----------------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None, *, model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    return {
        "id": "chatcmpl-msg_s1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _feed(translator: StreamTranslator, events: list[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks.extend(translator.feed(name, data))
    return chunks


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_s1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 12,
                "cache_read_input_tokens": 40,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
)


def _block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def _block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def _message_delta(stop_reason: str, output_tokens: int) -> tuple[str, dict[str, Any]]:
    data = {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": output_tokens}}
    return "message_delta", data


STOP = ("message_stop", {"type": "message_stop"})


def test_text_stream_golden() -> None:
    translator = StreamTranslator(created=1700000000)
    chunks = _feed(
        translator,
        [
            START,
            ("ping", {"type": "ping"}),
            _block_start(0, {"type": "thinking", "thinking": ""}),
            _delta(0, {"type": "thinking_delta", "thinking": "Greeting."}),
            _delta(0, {"type": "signature_delta", "signature": "sig"}),
            _block_stop(0),
            _block_start(1, {"type": "text", "text": ""}),
            _delta(1, {"type": "text_delta", "text": "Hel"}),
            _delta(1, {"type": "text_delta", "text": "lo"}),
            _block_stop(1),
            _message_delta("end_turn", 6),
        ],
    )
    assert chunks == [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "Greeting."}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({}, "stop"),
    ]
    assert not translator.finished
    assert translator.feed(*STOP) == [
        {
            "id": "chatcmpl-msg_s1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "claude-sonnet-4-5",
            "choices": [],
            "usage": {
                "prompt_tokens": 52,
                "completion_tokens": 6,
                "total_tokens": 58,
                "prompt_tokens_details": {"cached_tokens": 40},
            },
        }
    ]
    assert translator.finished


def test_tool_stream_golden_indexes_tool_calls_from_zero() -> None:
    translator = StreamTranslator(created=1700000000)
    chunks = _feed(
        translator,
        [
            START,
            _block_start(0, {"type": "text", "text": ""}),
            _delta(0, {"type": "text_delta", "text": "Checking."}),
            _block_stop(0),
            _block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
            _delta(1, {"type": "input_json_delta", "partial_json": ""}),
            _delta(1, {"type": "input_json_delta", "partial_json": '{"city": "Pa'}),
            _delta(1, {"type": "input_json_delta", "partial_json": 'ris"}'}),
            _block_stop(1),
            _block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}),
            _block_stop(2),
            _message_delta("tool_use", 30),
            STOP,
        ],
    )
    assert chunks[:-1] == [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Checking."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        _chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]
            }
        ),
        # A tool without parameters streams no input; clients still get parseable arguments.
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 30


def test_stream_error_event_raises_upstream_error() -> None:
    translator = StreamTranslator(created=1)
    # Nothing is sent for message_start alone, so an error right after it can still fail over.
    assert translator.feed(*START) == []
    assert translator.feed(*_block_start(0, {"type": "text", "text": ""})) == []
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError, match="overloaded_error: Overloaded") as caught:
        translator.feed("error", error)
    assert caught.value.status == 502 and caught.value.retryable
    assert not translator.finished


def test_stream_malformed_event_raises_upstream_error() -> None:
    translator = StreamTranslator(created=1)
    with pytest.raises(UpstreamError) as caught:
        translator.feed("content_block_delta", {"type": "content_block_delta"})
    assert caught.value.code == "upstream_malformed_response"


def test_stream_message_stop_without_message_delta_still_finishes_the_choice() -> None:
    chunks = _feed(StreamTranslator(created=1), [START, STOP])
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1]] == [None, "stop"]
    assert chunks[-1]["choices"] == []


def test_event_name_falls_back_to_the_data_type() -> None:
    translator = StreamTranslator(created=1)
    translator.feed(None, START[1])
    chunks = translator.feed(None, _delta(0, {"type": "text_delta", "text": "Hi"})[1])
    assert chunks[0]["id"] == "chatcmpl-msg_s1"
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
    ]


@pytest.mark.parametrize("with_tools", [False, True])
def test_stream_reassembles_to_the_non_streaming_answer(with_tools: bool) -> None:
    """The fake's stream and JSON answers, translated, must agree on content, tool calls and usage."""
    request = chat_request(
        {"messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER_TOOL] if with_tools else None}, "m"
    )
    message = answer(request, message_id="msg_x")
    expected = chat_response(message, created=1)
    chunks = _feed(StreamTranslator(created=1), stream_events(message))
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    arguments = "".join(
        call["function"].get("arguments", "")
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls") or []
    )
    reply = expected["choices"][0]["message"]
    assert content == (reply["content"] or "")
    if with_tools:
        assert json.loads(arguments) == json.loads(reply["tool_calls"][0]["function"]["arguments"])
    assert chunks[-2]["choices"][0]["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == expected["usage"]
