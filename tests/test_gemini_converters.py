"""Golden input/output pairs for the pure Gemini converters and the stream translator."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.gemini import chat, embeddings
from sluicegate.providers.gemini.stream import StreamTranslator

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string"},
                # a property whose *name* is a stripped keyword must survive
                "strict": {"type": ["boolean", "null"], "additionalProperties": False},
                "days": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0}},
            },
            "required": ["city"],
        },
    },
}


def _tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- chat_request -------------------------------------------------------------------------------


def test_request_full_conversation() -> None:
    request = {
        "model": "flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/photos/rome.JPG?size=large"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _tool_call("call_0_0", "get_weather", '{"city": "Paris"}'),
                    _tool_call("gemini-issued-7", "get_weather", '{"city": "Rome"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "call_0_0", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "gemini-issued-7", "content": "sunny"},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 100,
        "stop": "END",
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "stream": True,
    }

    assert chat.chat_request(request) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather where these were taken?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {
                        "fileData": {
                            "fileUri": "https://example.com/photos/rome.JPG?size=large",
                            "mimeType": "image/jpeg",
                        }
                    },
                ],
            },
            {
                "role": "model",
                "parts": [
                    # our own synthetic id is not sent; Gemini's own id goes back so it can match the answer
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "gemini-issued-7"}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"result": "sunny"},
                            "id": "gemini-issued-7",
                        }
                    },
                    {"text": "Thanks!"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string"},
                                "strict": {"type": "boolean", "nullable": True},
                                "days": {"type": "array", "items": {"type": "integer"}},
                            },
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "candidateCount": 2,
            "seed": 7,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
        },
    }


def test_request_does_not_mutate_the_callers_dict() -> None:
    request = {
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        "tools": [WEATHER_TOOL],
    }
    snapshot = repr(request)
    body = chat.chat_request(request)
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]
    assert repr(request) == snapshot


def test_request_minimal_has_no_optional_sections() -> None:
    body = chat.chat_request({"messages": [{"role": "user", "content": "Hi"}]})
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_request_max_completion_tokens_wins_and_stop_list_is_kept() -> None:
    body = chat.chat_request(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": ["a", "b"],
        }
    )
    assert body["generationConfig"] == {"maxOutputTokens": 20, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_request_tool_choice(tool_choice: Any, expected: dict[str, Any]) -> None:
    body = chat.chat_request({"messages": [{"role": "user", "content": "Hi"}], "tool_choice": tool_choice})
    assert body["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize(
    ("content", "response"),
    [
        ('{"temp": 21}', {"temp": 21}),
        ("[1, 2]", {"result": [1, 2]}),
        ("42", {"result": 42}),
        ("not json", {"result": "not json"}),
        ([{"type": "text", "text": '{"a": '}, {"type": "text", "text": "1}"}], {"a": 1}),
    ],
)
def test_request_tool_result_wrapping(content: Any, response: dict[str, Any]) -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "tool_calls": [_tool_call("call_0_0", "lookup", "{}")]},
        {"role": "tool", "tool_call_id": "call_0_0", "content": content},
    ]
    body = chat.chat_request({"messages": messages})
    assert body["contents"][-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "lookup", "response": response}}],
    }


def test_request_function_without_parameters_omits_the_schema() -> None:
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    body = chat.chat_request({"messages": [{"role": "user", "content": "Hi"}], "tools": [tool]})
    assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_request_response_format_json_object() -> None:
    body = chat.chat_request(
        {"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}}
    )
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


def test_request_response_format_json_schema_is_stripped() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"answer": {"type": "string", "$comment": "x"}},
        "required": ["answer"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": schema}}
    body = chat.chat_request({"messages": [{"role": "user", "content": "Hi"}], "response_format": response_format})
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    }


def test_schema_anyof_members_are_stripped_and_multi_types_become_anyof() -> None:
    schema = {"anyOf": [{"type": "string", "const": "x"}, {"type": ["integer", "number", "null"]}]}
    assert chat.gemini_schema(schema) == {
        "anyOf": [{"type": "string"}, {"anyOf": [{"type": "integer"}, {"type": "number"}], "nullable": True}]
    }


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [{"role": "assistant", "tool_calls": [_tool_call("c1", "f", "{not json")]}],
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            [{"role": "assistant", "tool_calls": [_tool_call("c1", "f", "[1]")]}],
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}],
            "messages[1].tool_call_id",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
            "messages[0].content[0]",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}],
            "messages[0].content[0]",
        ),
        ([{"role": "function", "content": "x"}], "messages[0].role"),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ],
)
def test_request_rejects_what_gemini_cannot_express(messages: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat.chat_request({"messages": messages})
    assert info.value.param == param
    assert info.value.status == 400


# --- chat_response ------------------------------------------------------------------------------

USAGE_METADATA = {
    "promptTokenCount": 10,
    "candidatesTokenCount": 4,
    "thoughtsTokenCount": 6,
    "cachedContentTokenCount": 8,
    "totalTokenCount": 20,
}
#: completion counts thoughts too, as OpenAI does; reasoning and cache reads are reported apart
EXPECTED_USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 10,
    "total_tokens": 20,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 6},
}


def test_response_text_with_thoughts_and_usage() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "Let me think.", "thought": True}, {"text": "Hello"}, {"text": " there"}],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": USAGE_METADATA,
        "modelVersion": "gemini-2.5-flash",
    }
    assert chat.chat_response(response, "gemini-2.5-flash", completion_id="chatcmpl-1", created=1700000000) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there", "reasoning_content": "Let me think."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": EXPECTED_USAGE,
    }
    usage = chat.usage(response)
    assert (usage.reasoning_tokens, usage.cached_tokens, usage.completion_tokens) == (6, 8, 10)


def test_response_function_calls() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time", "args": {}, "id": "fc-9"}},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    choice = chat.chat_response(response, "m", completion_id="c", created=0)["choices"][0]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "fc-9", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_response_several_candidates_become_choices() -> None:
    response = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        ]
    }
    choices = chat.chat_response(response, "m", completion_id="c", created=0)["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


@pytest.mark.parametrize(
    ("gemini", "has_calls", "openai"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("OTHER", False, "stop"),
    ],
)
def test_finish_reason_mapping(gemini: str, has_calls: bool, openai: str) -> None:
    assert chat.finish_reason(gemini, has_calls) == openai


def test_response_safety_stop_without_content() -> None:
    response = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
    choice = chat.chat_response(response, "m", completion_id="c", created=0)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] == "content_filter"


def test_response_blocked_prompt_is_an_empty_filtered_answer() -> None:
    response = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}}
    completion = chat.chat_response(response, "m", completion_id="c", created=0)
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}


def test_response_without_candidates_or_block_is_malformed() -> None:
    with pytest.raises(UpstreamError) as info:
        chat.chat_response({"usageMetadata": {}}, "m", completion_id="c", created=0)
    assert info.value.code == "upstream_malformed_response"


# --- StreamTranslator ---------------------------------------------------------------------------


def _translator() -> StreamTranslator:
    return StreamTranslator("gemini-2.5-flash", completion_id="chatcmpl-s", created=1700000000)


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gemini-2.5-flash",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def test_stream_text() -> None:
    translator = _translator()
    events = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hmm", "thought": True}]}, "index": 0}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]},
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": USAGE_METADATA,
        },
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    assert translator.finished
    chunks += translator.finish()
    assert chunks == [
        _chunk({"role": "assistant", "reasoning_content": "Hmm"}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({}, "stop"),
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gemini-2.5-flash",
            "choices": [],
            "usage": EXPECTED_USAGE,
        },
    ]


def test_stream_tool_calls_are_numbered_across_events_like_non_streaming() -> None:
    first = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    second = {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
    translator = _translator()
    chunks = translator.feed({"candidates": [{"content": {"parts": [first]}}]})
    chunks += translator.feed({"candidates": [{"content": {"parts": [second]}, "finishReason": "STOP"}]})
    expected_calls = chat.chat_response(
        {"candidates": [{"content": {"parts": [first, second]}, "finishReason": "STOP"}]},
        "m",
        completion_id="c",
        created=0,
    )["choices"][0]["message"]["tool_calls"]
    assert chunks == [
        _chunk({"role": "assistant", "tool_calls": [{"index": 0, **expected_calls[0]}]}),
        _chunk({"tool_calls": [{"index": 1, **expected_calls[1]}]}),
        _chunk({}, "tool_calls"),
    ]


def test_stream_usage_only_event_and_unfinished_stream() -> None:
    translator = _translator()
    assert translator.feed({"usageMetadata": {"promptTokenCount": 3}}) == []
    assert translator.feed({"candidates": [{"content": {"parts": [{"text": "partial"}]}}]}) == [
        _chunk({"role": "assistant", "content": "partial"})
    ]
    assert not translator.finished
    assert translator.finish()[0]["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


def test_stream_blocked_prompt() -> None:
    translator = _translator()
    chunks = translator.feed({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    assert chunks == [_chunk({"role": "assistant", "content": ""}, "content_filter")]
    assert translator.finished


def test_stream_error_object_raises() -> None:
    translator = _translator()
    with pytest.raises(UpstreamError) as info:
        translator.feed({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})
    assert info.value.code == "upstream_stream_error"
    assert "boom" in info.value.message


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_request() -> None:
    texts = embeddings.input_texts({"model": "embed", "input": ["a", "bb"]})
    assert embeddings.embeddings_request(texts, "text-embedding-004", 4) == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "bb"}]}, "outputDimensionality": 4},
        ]
    }
    assert embeddings.embeddings_request(embeddings.input_texts({"input": "x"}), "tunedModels/mine") == {
        "requests": [{"model": "tunedModels/mine", "content": {"parts": [{"text": "x"}]}}]
    }


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], [], None, ["ok", 5]])
def test_embeddings_reject_token_arrays_and_non_text(value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        embeddings.input_texts({"input": value})
    assert info.value.param == "input"


def test_embeddings_response_floats_and_estimated_usage() -> None:
    response = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 0.0]}]}
    assert embeddings.embeddings_response(response, "text-embedding-004", ["hello", "hi"]) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]},
        ],
        "model": "text-embedding-004",
        # 7 characters / 4, rounded up: Gemini reports no token counts for embeddings
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


def test_embeddings_response_base64_is_little_endian_float32() -> None:
    response = {"embeddings": [{"values": [0.5, -1.0, 0.25]}]}
    encoded = embeddings.embeddings_response(response, "m", ["x"], encoding_format="base64")["data"][0]["embedding"]
    assert struct.unpack("<3f", base64.b64decode(encoded)) == (0.5, -1.0, 0.25)


def test_embeddings_response_count_mismatch_is_malformed() -> None:
    with pytest.raises(UpstreamError) as info:
        embeddings.embeddings_response({"embeddings": [{"values": [1.0]}]}, "m", ["a", "b"])
    assert info.value.code == "upstream_malformed_response"
