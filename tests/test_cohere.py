"""Cohere v2: golden converter pairs, then the gateway over HTTP (openai SDK for chat and embeddings, plain
HTTP for /v1/rerank) against the fake Cohere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.cohere import chat, embed
from sluicegate.providers.cohere.stream import StreamTranslator
from tests.fakes.cohere import INPUT_TOKENS, OUTPUT_TOKENS, TEXT, FakeCohere, stream_events, vector

WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMETERS},
}
OTHER_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


# --- golden converters -------------------------------------------------------------------------------


def test_request_golden() -> None:
    request = {
        "model": "smart",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        ],
        "max_completion_tokens": 200,
        "top_p": 0.5,
        "stop": "END",
        "seed": 3,
        "tools": [WEATHER_TOOL, OTHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "reasoning_effort": "medium",
    }
    assert chat.chat_request(request, "command-a-03-2025", stream=True) == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        ],
        "p": 0.5,
        "seed": 3,
        "max_tokens": 200,
        "stop_sequences": ["END"],
        "tools": [WEATHER_TOOL],
        "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
        "thinking": {"type": "enabled", "token_budget": 4096},
        "stream": True,
    }
    assert chat.chat_request({"messages": [], "reasoning_effort": "none"}, "m")["thinking"] == {"type": "disabled"}
    with pytest.raises(InvalidRequestError, match="`n` must be 1"):
        chat.chat_request({"messages": [], "n": 3}, "m")


def test_response_golden() -> None:
    answer = {
        "id": "abc",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "Hmm."}, {"type": "text", "text": "Calling."}],
            "tool_plan": "call it",
            "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
        },
        "usage": {
            "billed_units": {"input_tokens": 5, "output_tokens": 2},
            "tokens": {"input_tokens": 50, "output_tokens": 2},
        },
    }
    completion = chat.chat_response(answer, "command", created=9)
    assert completion["id"] == "chatcmpl-abc" and completion["created"] == 9
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Calling.",
                "reasoning_content": "Hmm.",
                "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert completion["usage"] == {"prompt_tokens": 50, "completion_tokens": 2, "total_tokens": 52}


def test_stream_translator_golden() -> None:
    answer = {
        "id": "s1",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": "plan",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city":"Paris"}'}}
            ],
        },
        "usage": {"tokens": {"input_tokens": 4, "output_tokens": 3}},
    }
    translator = StreamTranslator("command", created=1)
    chunks = [chunk for _, event in stream_events(answer) for chunk in translator.feed(event)]
    assert translator.finished and chunks[0]["id"] == "chatcmpl-s1"
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {
        "tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]
    }
    assert json.loads("".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1])) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.finish()[0]["usage"]["total_tokens"] == 7
    with pytest.raises(UpstreamError, match="mid-stream"):
        StreamTranslator("c", created=1).feed(
            {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "x"}}
        )


def test_embed_and_rerank_golden() -> None:
    assert embed.embed_request({"input": "hi", "dimensions": 256, "input_type": "search_query"}, "embed-v4.0") == {
        "model": "embed-v4.0",
        "texts": ["hi"],
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    with pytest.raises(InvalidRequestError, match="text only"):
        embed.embed_request({"input": [[1, 2]]}, "m")
    request = {"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}
    assert embed.rerank_request(request, "rerank-v3.5") == {
        "model": "rerank-v3.5",
        "query": "q",
        "documents": ["a", "b"],
        "top_n": 1,
    }


# --- the gateway against the fake Cohere ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCohere]:
    server = FakeCohere().start()
    yield server
    server.stop()


@pytest.fixture
def cohere(fake: FakeCohere) -> FakeCohere:
    fake.reset()
    return fake


@pytest.fixture
def gw(gateway_factory: Any, cohere: FakeCohere, fake_openai: Any) -> Any:
    return gateway_factory(
        {
            "providers": {
                "co": {"type": "cohere", "api_key": "co-key", "base_url": cohere.base_url},
                "oai": {"type": "openai", "api_key": "sk", "base_url": fake_openai.base_url + "/v1"},
            },
            "models": [
                {"name": "command", "deployments": [{"provider": "co", "model": "command-a-03-2025"}]},
                {"name": "embed", "deployments": [{"provider": "co", "model": "embed-v4.0"}]},
                {"name": "rerank", "deployments": [{"provider": "co", "model": "rerank-v3.5"}]},
                {"name": "no-rerank", "deployments": [{"provider": "oai", "model": "gpt-4o"}]},
            ],
        }
    )


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


def test_chat_text(gw: Any, cohere: FakeCohere) -> None:
    answer = gw.openai().chat.completions.create(
        model="command", messages=MESSAGES, top_p=0.9, stop=["END"], max_completion_tokens=40
    )
    assert answer.choices[0].message.content == TEXT and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens == INPUT_TOKENS + 100
    sent = cohere.requests[-1]
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == "Bearer co-key"
    assert sent.body["p"] == 0.9 and sent.body["stop_sequences"] == ["END"] and sent.body["max_tokens"] == 40


def test_chat_thinking_is_reasoning_content(gw: Any) -> None:
    answer = gw.openai().chat.completions.create(model="command", messages=MESSAGES, reasoning_effort="low")
    assert answer.choices[0].message.content == TEXT
    assert answer.choices[0].message.model_extra == {"reasoning_content": "Let me think."}


def test_chat_tools_round_trip_and_stream(gw: Any) -> None:
    client = gw.openai()
    first = client.chat.completions.create(model="command", messages=MESSAGES, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    history = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    assert (
        client.chat.completions.create(model="command", messages=history, tools=[WEATHER_TOOL])
        .choices[0]
        .message.content
        == TEXT
    )
    chunks = list(client.chat.completions.create(model="command", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True))
    pieces = [c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or []]
    assert len(pieces) > 2 and json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}
    text = list(
        client.chat.completions.create(
            model="command", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in text if c.choices) == TEXT
    assert text[-1].usage is not None and text[-1].usage.completion_tokens == OUTPUT_TOKENS


def test_embeddings(gw: Any, cohere: FakeCohere) -> None:
    answer = gw.openai().embeddings.create(model="embed", input=["one", "two"], encoding_format="float")
    assert [item.embedding for item in answer.data] == [vector("one"), vector("two")]
    assert answer.usage.prompt_tokens == 6
    assert cohere.requests[-1].body["input_type"] == "search_document"
    # The SDK's default base64 encoding decodes back to the same floats (float32).
    default = gw.openai().embeddings.create(model="embed", input="one")
    assert default.data[0].embedding == pytest.approx(vector("one"), rel=1e-6)


def test_rerank(gw: Any, cohere: FakeCohere) -> None:
    documents = ["the cat sat", {"text": "dogs bark loudly"}, "a cat and a dog"]
    response = httpx.post(
        gw.url("/v1/rerank"),
        json={"model": "rerank", "query": "cat dog", "documents": documents, "top_n": 2, "return_documents": True},
    )
    assert response.status_code == 200 and response.headers["x-sluicegate-provider"] == "co/rerank-v3.5"
    body = response.json()
    assert [r["index"] for r in body["results"]] == [2, 0]
    assert body["results"][0] == {"index": 2, "relevance_score": 1.0, "document": {"text": "a cat and a dog"}}
    assert body["usage"]["search_units"] == 1 and body["usage"]["prompt_tokens"] > 0
    assert cohere.requests[-1].body["documents"] == ["the cat sat", "dogs bark loudly", "a cat and a dog"]


def test_rerank_errors(gw: Any) -> None:
    missing = httpx.post(gw.url("/v1/rerank"), json={"model": "rerank", "documents": ["a"]})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "query"
    unsupported = httpx.post(gw.url("/v1/rerank"), json={"model": "no-rerank", "query": "q", "documents": ["a"]})
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "unsupported_capability"


def test_stream_error_event(gw: Any, cohere: FakeCohere) -> None:
    from tests.fakes.server import Fault

    cohere.faults.append(Fault(error_event_after=3))
    with pytest.raises(openai.APIError, match="injected stream error"):
        list(gw.openai().chat.completions.create(model="command", messages=MESSAGES, stream=True))
