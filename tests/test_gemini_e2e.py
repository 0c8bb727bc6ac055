"""The gateway over HTTP with the official openai SDK, against the fake Gemini API."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.gemini import CANDIDATES_TOKENS, THOUGHTS_TOKENS, expected_vector
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]
PROMPT_TOKENS = 2  # the fake counts words in the prompt
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def config(fake: Any) -> dict[str, Any]:
    return {
        "providers": {
            "gem": {
                "type": "gemini",
                "api_key": "test-key",
                "base_url": fake.base_url,
                "headers": {"x-team": "search"},
            }
        },
        "models": [
            {"name": "flash", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
            {"name": "embed", "deployments": [{"provider": "gem", "model": "text-embedding-004"}]},
        ],
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_gemini: Any) -> Any:
    return gateway_factory(config(fake_gemini))


# --- chat ---------------------------------------------------------------------------------------


def test_text_answer_and_usage(gw: Any, fake_gemini: Any) -> None:
    answer = gw.openai().chat.completions.create(
        model="flash",
        messages=[{"role": "system", "content": "Be kind."}, *MESSAGES],
        temperature=0.3,
        max_tokens=64,
        extra_headers={"x-request-id": "req-gemini-1"},
    )
    assert answer.choices[0].message.content == "Hello from fake Gemini."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, CANDIDATES_TOKENS + THOUGHTS_TOKENS)
    assert usage.total_tokens == PROMPT_TOKENS + CANDIDATES_TOKENS + THOUGHTS_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHTS_TOKENS

    sent = fake_gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert sent.headers["x-team"] == "search"
    assert sent.headers["x-request-id"] == "req-gemini-1"
    assert sent.body == {
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 64},
    }


def test_tool_call_round_trip(gw: Any, fake_gemini: Any) -> None:
    client = gw.openai()
    first = client.chat.completions.create(model="flash", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    sent_tools = fake_gemini.requests[-1].body
    assert sent_tools["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    declared = sent_tools["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "additionalProperties" not in declared

    followup = [*MESSAGES, choice.message.model_dump(exclude_none=True)]
    followup.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'})
    second = client.chat.completions.create(model="flash", messages=followup, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello from fake Gemini."
    assert second.choices[0].finish_reason == "stop"
    contents = fake_gemini.requests[-1].body["contents"]
    assert [content["role"] for content in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]


def test_invalid_tool_arguments_are_400_and_never_sent(gw: Any, fake_gemini: Any) -> None:
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model="flash", messages=messages)
    assert "not valid JSON" in caught.value.message
    assert fake_gemini.requests == []


# --- streaming ----------------------------------------------------------------------------------


def test_stream_text_with_include_usage(gw: Any, fake_gemini: Any) -> None:
    stream = gw.openai().chat.completions.create(
        model="flash", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Gemini."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4, "one chunk per Gemini event"
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == PROMPT_TOKENS + CANDIDATES_TOKENS + THOUGHTS_TOKENS
    assert last.usage.completion_tokens_details is not None
    assert last.usage.completion_tokens_details.reasoning_tokens == THOUGHTS_TOKENS
    assert len({c.id for c in chunks}) == 1
    sent = fake_gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}


def test_stream_tool_call_matches_non_streaming(gw: Any) -> None:
    client = gw.openai()
    whole = client.chat.completions.create(model="flash", messages=MESSAGES, tools=[WEATHER_TOOL])
    expected = whole.choices[0].message.tool_calls[0]
    stream = client.chat.completions.create(model="flash", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    ids, names, arguments, finish = set(), set(), [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            ids.add(delta.id)
            names.add(delta.function.name)
            arguments.append(delta.function.arguments or "")
    assert json.loads("".join(arguments)) == json.loads(expected.function.arguments) == {"city": "Paris"}
    assert ids == {expected.id} and names == {"get_weather"}
    assert finish == "tool_calls"


def test_stream_cut_before_finish_is_an_error_not_a_hang(gw: Any, fake_gemini: Any) -> None:
    fake_gemini.faults.append(Fault(cut_after=2))
    stream = gw.openai(timeout=10).chat.completions.create(model="flash", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from"
    assert not any(c.choices and c.choices[0].finish_reason for c in received)


def test_stream_error_event_mid_stream(gw: Any, fake_gemini: Any) -> None:
    fake_gemini.faults.append(Fault(error_event_after=1))
    stream = gw.openai(timeout=10).chat.completions.create(model="flash", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert "injected in-stream error" in str(caught.value.message)


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_shape_order_and_dimensions(gw: Any, fake_gemini: Any) -> None:
    texts = ["alpha", "beta", "gamma"]
    result = gw.openai().embeddings.create(model="embed", input=texts, dimensions=4)
    assert [d.index for d in result.data] == [0, 1, 2]
    for item, text in zip(result.data, texts, strict=True):
        # the SDK asks for base64 by default, so values come back as float32
        assert item.embedding == pytest.approx(expected_vector(text, 4), abs=1e-6)
    assert result.usage.prompt_tokens == 4  # ceil(14 characters / 4): Gemini reports no token counts
    sent = fake_gemini.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["outputDimensionality"] for r in sent.body["requests"]] == [4, 4, 4]


def test_embeddings_single_string_as_floats(gw: Any) -> None:
    result = gw.openai().embeddings.create(model="embed", input="hello", encoding_format="float")
    assert len(result.data) == 1
    assert result.data[0].embedding == expected_vector("hello")


def test_embeddings_token_arrays_are_400(gw: Any, fake_gemini: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().embeddings.create(model="embed", input=[[1, 2, 3]])
    assert "token arrays" in caught.value.message
    assert fake_gemini.requests == []


# --- errors -------------------------------------------------------------------------------------


def test_429_keeps_status_and_retry_after(gw: Any, fake_gemini: Any) -> None:
    fake_gemini.faults.append(Fault(status=429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        gw.openai().chat.completions.create(model="flash", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"
    assert "injected 429" in caught.value.message


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_502(gw: Any, fake_gemini: Any, status: int) -> None:
    fake_gemini.faults.append(Fault(status=status))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="flash", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == f"upstream_{status}"


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (False, "upstream_malformed_response"),
        # a JSON body holds no SSE events, so the stream ends before any finishReason
        (True, "upstream_incomplete_response"),
    ],
)
def test_malformed_json_is_502(gw: Any, fake_gemini: Any, stream: bool, code: str) -> None:
    fake_gemini.faults.append(Fault(malformed=True))
    response = httpx.post(
        gw.url("/v1/chat/completions"), json={"model": "flash", "messages": MESSAGES, "stream": stream}, timeout=10
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == code
