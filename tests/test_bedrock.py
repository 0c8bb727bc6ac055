"""Bedrock Converse: golden converter pairs, then the gateway over HTTP with the openai SDK against the fake
Bedrock (SigV4 checked by botocore, binary event streams, exception frames)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import openai
import pytest

from sluicegate.errors import InvalidRequestError, RateLimitError, UpstreamError, UpstreamRequestError
from sluicegate.providers.bedrock import converse
from sluicegate.providers.bedrock.eventstream import Message, encode
from sluicegate.providers.bedrock.stream import StreamTranslator
from tests.fakes.bedrock import INPUT_TOKENS, OUTPUT_TOKENS, FakeBedrock, event_frame, exception_frame
from tests.fakes.server import Fault

PNG = "iVBORw0KGgo="
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMETERS},
}
MODEL = "anthropic.claude-sonnet-4-5-v1:0"


# --- golden converters -------------------------------------------------------------------------------


def test_request_golden() -> None:
    request = {
        "model": "smart",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 3000,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": "END",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "reasoning_effort": "low",
    }
    assert converse.converse_request(request, MODEL) == {
        "messages": [
            {
                "role": "user",
                "content": [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}],
            },
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "18C"}]}}, {"text": "Thanks"}],
            },
        ],
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 3000, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "Weather",
                        "inputSchema": {"json": WEATHER_PARAMETERS},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    }


def test_request_refusals_and_quirks() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(InvalidRequestError, match="inline as base64"):
        converse.converse_request(
            {
                **base,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
                ],
            },
            MODEL,
        )
    with pytest.raises(InvalidRequestError, match="`n` must be 1"):
        converse.converse_request({**base, "n": 2}, MODEL)
    no_tools = converse.converse_request({**base, "tools": [WEATHER_TOOL], "tool_choice": "none"}, MODEL)
    assert "toolConfig" not in no_tools
    # Non-Anthropic model families on Bedrock get no thinking field.
    assert "additionalModelRequestFields" not in converse.converse_request(
        {**base, "reasoning_effort": "high"}, "meta.llama3-70b-instruct-v1:0"
    )


@pytest.mark.parametrize(
    ("model", "profile", "region", "expected"),
    [
        (MODEL, None, "us-east-1", MODEL),
        (MODEL, "auto", "us-west-2", f"us.{MODEL}"),
        (MODEL, "auto", "eu-central-1", f"eu.{MODEL}"),
        (MODEL, "auto", "ap-northeast-1", f"apac.{MODEL}"),
        (MODEL, "auto", "us-gov-west-1", f"us-gov.{MODEL}"),
        (MODEL, "global", "us-east-1", f"global.{MODEL}"),
        (f"eu.{MODEL}", "auto", "us-east-1", f"eu.{MODEL}"),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
            "auto",
            "us-east-1",
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
        ),
    ],
)
def test_cross_region_inference_profiles(model: str, profile: str | None, region: str, expected: str) -> None:
    assert converse.model_id(model, profile, region) == expected


def test_response_golden() -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "sig"}}},
                    {"text": "Calling."},
                    {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Paris"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 5,
            "totalTokens": 15,
            "cacheReadInputTokens": 100,
            "cacheWriteInputTokens": 20,
        },
    }
    assert converse.chat_response(answer, "m", completion_id="chatcmpl-1", created=7) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Calling.",
                    "reasoning_content": "Hmm.",
                    "tool_calls": [
                        {
                            "id": "tu1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 130,
            "completion_tokens": 5,
            "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 20},
        },
    }


def _message(frame: bytes) -> Message:
    from sluicegate.providers.bedrock.eventstream import Decoder

    (message,) = Decoder().feed(frame)
    return message


def test_stream_translator_golden() -> None:
    translator = StreamTranslator("m", completion_id="chatcmpl-s", created=1)
    frames = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
        event_frame(
            "contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu", "name": "f"}}}
        ),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a":'}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        event_frame("metadata", {"usage": {"inputTokens": 4, "outputTokens": 3, "totalTokens": 7}}),
    ]
    deltas = [c["choices"][0] for frame in frames for c in translator.feed(_message(frame))]
    assert translator.finished
    assert [d["delta"] for d in deltas] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "think"},
        {"content": "Hi"},
        {"tool_calls": [{"index": 0, "id": "tu", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {},
    ]
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert translator.finish()[0]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("throttlingException", RateLimitError),
        ("validationException", UpstreamRequestError),
        ("modelStreamErrorException", UpstreamError),
    ],
)
def test_exception_frames_raise(kind: str, error: type[Exception]) -> None:
    translator = StreamTranslator("m", completion_id="c", created=1)
    with pytest.raises(error, match=kind):
        translator.feed(_message(exception_frame(kind, "boom")))


def test_transport_error_frame() -> None:
    frame = encode({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "oops"}, b"")
    with pytest.raises(UpstreamError, match="InternalFailure: oops"):
        StreamTranslator("m", completion_id="c", created=1).feed(_message(frame))


# --- the gateway against the fake Bedrock --------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    server = FakeBedrock().start()
    yield server
    server.stop()


@pytest.fixture
def bedrock(fake: FakeBedrock) -> FakeBedrock:
    fake.reset()
    return fake


def config(fake: FakeBedrock, *models: str, **provider: Any) -> dict[str, Any]:
    settings = {"type": "bedrock", "base_url": fake.base_url, "aws": fake.credentials(), **provider}
    return {
        "providers": {"aws": settings},
        "models": [{"name": "smart", "deployments": [{"provider": "aws", "model": m} for m in models or (MODEL,)]}],
    }


@pytest.fixture
def gw(gateway_factory: Any, bedrock: FakeBedrock) -> Any:
    return gateway_factory(config(bedrock))


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


def test_text_answer_signed_and_converted(gw: Any, bedrock: FakeBedrock) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, max_tokens=50)
    answer = raw.parse()
    assert answer.choices[0].message.content == FakeBedrock.TEXT and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
    )
    sent = bedrock.requests[-1]
    assert sent.path == f"/model/{MODEL}/converse" and len(bedrock.verified) == 1
    assert sent.headers["x-amz-security-token"] == "fake-session-token" and "x-request-id" in sent.headers
    assert sent.body == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50},
    }
    assert raw.headers["x-sluicegate-provider"] == f"aws/{MODEL}"


def test_tool_round_trip(gw: Any, bedrock: FakeBedrock) -> None:
    client = gw.openai()
    first = client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    history = [
        *MESSAGES,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    second = client.chat.completions.create(model="smart", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == FakeBedrock.TEXT


def test_stream_text_and_tool_deltas(gw: Any) -> None:
    client = gw.openai()
    chunks = list(
        client.chat.completions.create(
            model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text) == 4 and "".join(text) == FakeBedrock.TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    tool_chunks = list(
        client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    )
    pieces = [call for c in tool_chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert len(pieces) > 2 and pieces[0].function.name == "get_weather"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in tool_chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_image_is_sent_inline(gw: Any, bedrock: FakeBedrock) -> None:
    content = [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
    ]
    gw.openai().chat.completions.create(model="smart", messages=[{"role": "user", "content": content}])
    assert bedrock.requests[-1].body["messages"][0]["content"][1] == {
        "image": {"format": "jpeg", "source": {"bytes": PNG}}
    }


def test_inference_profile_and_api_key(gateway_factory: Any, bedrock: FakeBedrock) -> None:
    gw = gateway_factory(config(bedrock, aws={**bedrock.credentials(), "inference_profile": "auto"}))
    gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert bedrock.requests[-1].path == f"/model/us.{MODEL}/converse"
    keyed = gateway_factory(config(bedrock, api_key="bedrock-api-key", aws={"region": "us-east-1"}))
    keyed.openai().chat.completions.create(model="smart", messages=MESSAGES)
    sent = bedrock.requests[-1]
    assert sent.headers["authorization"] == "Bearer bedrock-api-key" and "x-amz-date" not in sent.headers


def test_throttling_and_validation_errors(gw: Any, bedrock: FakeBedrock) -> None:
    bedrock.faults.append(Fault(status=400))
    with pytest.raises(openai.BadRequestError) as refused:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert "injected 400" in refused.value.message
    bedrock.faults.append(Fault(status=429, retry_after=4))
    with pytest.raises(openai.RateLimitError) as limited:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "4"


def test_exception_frame_before_content_fails_over(gateway_factory: Any, bedrock: FakeBedrock) -> None:
    gw = gateway_factory(config(bedrock, "anthropic.first-v1:0", "anthropic.second-v1:0"))
    bedrock.faults.append(Fault(error_event_after=1))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == FakeBedrock.TEXT
    assert raw.headers["x-sluicegate-provider"] == "aws/anthropic.second-v1:0"


def test_exception_frame_after_content_ends_the_stream_with_an_error(gw: Any, bedrock: FakeBedrock) -> None:
    bedrock.faults.append(Fault(error_event_after=3))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5):
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from "
    assert "modelStreamErrorException" in caught.value.message


def test_cut_stream_is_an_error_not_a_hang(gw: Any, bedrock: FakeBedrock) -> None:
    bedrock.faults.append(Fault(cut_after=1))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5)
    assert caught.value.status_code == 502
    bedrock.faults.append(Fault(cut_after=3))
    with pytest.raises(openai.APIError, match="cut off"):
        list(gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True, timeout=5))


def test_missing_credentials_fail_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluicegate.config import config_from_dict
    from sluicegate.errors import ConfigurationError
    from sluicegate.gateway import Gateway

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    document = {"providers": {"aws": {"type": "bedrock", "aws": {"region": "us-east-1"}}}, "models": []}
    with pytest.raises(ConfigurationError, match="needs AWS credentials"):
        Gateway(config_from_dict(document))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    assert Gateway(config_from_dict(document)).providers["aws"].type_name == "bedrock"


def test_malformed_answer_is_502(gw: Any, bedrock: FakeBedrock) -> None:
    bedrock.faults.append(Fault(malformed=True))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert (
        caught.value.status_code == 502
        and msgspec.json.decode(caught.value.response.content)["error"]["code"] == "upstream_malformed_response"
    )
