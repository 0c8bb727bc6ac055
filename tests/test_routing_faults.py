"""Each fault kind an upstream can throw, and what the router does about it, over HTTP with the openai SDK.

Two deployments on the fake OpenAI upstream (models `first` and `second`): a fault queued on the fake
hits whichever request arrives next, so the order of `fake.requests` shows retries and failovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

import sluicegate
from sluicegate.config import config_from_dict
from sluicegate.errors import UpstreamError
from sluicegate.gateway import Gateway
from tests.fakes.openai import TEXT
from tests.fakes.server import Fault
from tests.recording import RecordSink

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, routing: dict[str, Any] | None = None, timeout: dict[str, Any] | None = None) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "openai", "api_key": "sk-up", "base_url": fake.base_url + "/v1"}
    if timeout:
        provider["timeout"] = timeout
    return {
        "providers": {"oai": provider},
        "models": [
            {
                "name": "smart",
                "routing": routing or {},
                "deployments": [{"provider": "oai", "model": "first"}, {"provider": "oai", "model": "second"}],
            },
            {"name": "single", "routing": routing or {}, "deployments": [{"provider": "oai", "model": "only"}]},
        ],
    }


def models(fake: Any) -> list[str]:
    return [request.body["model"] for request in fake.requests]


def stream_text(chunks: Any) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


@pytest.fixture
def start(gateway_factory: Any, fake_openai: Any) -> Callable[..., Any]:
    def run(routing: dict[str, Any] | None = None, timeout: dict[str, Any] | None = None) -> Any:
        gw = gateway_factory(config(fake_openai, routing, timeout))
        gw.sink = RecordSink()
        gw.gateway.recorder.add(gw.sink)
        return gw

    return run


# --- 429 and Retry-After -----------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_retries_the_same_deployment(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 1, "max_retry_after": 5})
    fake_openai.faults.append(Fault(status=429, retry_after=0.3))
    began = time.monotonic()
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert time.monotonic() - began >= 0.3, "the retry waited for Retry-After"
    assert raw.parse().choices[0].message.content == TEXT
    assert models(fake_openai) == ["first", "first"]
    assert raw.headers["x-sluicegate-provider"] == "oai/first"
    assert raw.headers["x-sluicegate-attempts"] == "2"
    assert raw.headers["x-sluicegate-failed-attempts"] == "oai/first:429:rate_limit_exceeded"


def test_429_asking_for_longer_than_max_retry_after_moves_on_and_cools_the_deployment(
    start: Any, fake_openai: Any
) -> None:
    gw = start({"retries": 3, "max_retry_after": 1})
    fake_openai.faults.append(Fault(status=429, retry_after=30))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["x-sluicegate-provider"] == "oai/second"
    # The next request does not knock on the rate-limited deployment again.
    gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert models(fake_openai) == ["first", "second", "second"]
    first = next(d for d in httpx.get(gw.url("/v1/deployments")).json()["data"] if d["id"] == "oai/first")
    assert first["state"] == "open" and first["reason"] == "rate-limited"
    assert 25 < first["cooldown_remaining_s"] <= 30


def test_single_deployment_rate_limited_fails_fast_with_429_and_retry_after(start: Any, fake_openai: Any) -> None:
    gw = start()
    fake_openai.faults.append(Fault(status=429, retry_after=20))
    with pytest.raises(openai.RateLimitError) as first:
        gw.openai().chat.completions.create(model="single", messages=MESSAGES)
    assert first.value.response.headers["retry-after"] == "20"
    with pytest.raises(openai.RateLimitError) as second:
        gw.openai().chat.completions.create(model="single", messages=MESSAGES)
    assert second.value.code == "deployments_saturated"
    assert 0 < int(second.value.response.headers["retry-after"]) <= 20
    assert len(fake_openai.requests) == 1, "the cooled-down deployment was not asked again"


# --- 5xx, client errors, credentials -------------------------------------------------------------------


def test_5xx_is_retried_with_backoff_then_answers(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 2, "backoff": 0.01, "max_backoff": 0.05})
    fake_openai.faults.extend([Fault(status=500), Fault(status=503)])
    raw = gw.openai().chat.completions.with_raw_response.create(model="single", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == TEXT
    assert raw.headers["x-sluicegate-attempts"] == "3"
    record = gw.sink.wait(1)[0]
    assert [(a.deployment, a.status, a.error) for a in record.attempts] == [
        ("oai/only", 500, "upstream_500"),
        ("oai/only", 503, "upstream_503"),
        ("oai/only", 200, None),
    ]
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in record.attempts)


def test_retry_on_decides_which_statuses_are_retried(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 2, "backoff": 0.01, "retry_on": [503]})
    fake_openai.faults.append(Fault(status=500))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    # 500 is not in retry_on: no retry on `first`, straight on to `second`.
    assert models(fake_openai) == ["first", "second"]
    assert raw.headers["x-sluicegate-provider"] == "oai/second"


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_never_retried_nor_failed_over(start: Any, fake_openai: Any, status: int) -> None:
    gw = start({"retries": 3, "retry_on": [400, 404, 422, 500]})
    fake_openai.faults.append(Fault(status=status))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    assert caught.value.status_code == status
    assert len(fake_openai.requests) == 1


def test_upstream_credentials_rejected_fails_over_without_retrying(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 2, "backoff": 0.01})
    fake_openai.faults.append(Fault(status=401))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert models(fake_openai) == ["first", "second"]
    assert raw.headers["x-sluicegate-failed-attempts"] == "oai/first:401:upstream_auth_failed"


def test_every_deployment_failing_returns_the_last_error_in_openai_shape(start: Any, fake_openai: Any) -> None:
    gw = start()
    fake_openai.faults.extend([Fault(status=500), Fault(status=503)])
    response = httpx.post(gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_503"
    record = gw.sink.wait(1)[0]
    assert [(a.deployment, a.status) for a in record.attempts] == [("oai/first", 500), ("oai/second", 503)]
    assert record.status == 502 and record.error_code == "upstream_503"


# --- timeouts ------------------------------------------------------------------------------------------


def test_timeout_fails_over(start: Any, fake_openai: Any) -> None:
    gw = start(timeout={"first_token": 0.3})
    fake_openai.faults.append(Fault(delay=1.5))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["x-sluicegate-provider"] == "oai/second"
    assert raw.headers["x-sluicegate-failed-attempts"] == "oai/first:504:upstream_timeout"


def test_slow_first_byte_of_a_stream_fails_over(start: Any, fake_openai: Any) -> None:
    gw = start({"timeout": {"first_token": 0.3}})
    fake_openai.faults.append(Fault(delay=1.5))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert stream_text(raw.parse()) == TEXT
    assert raw.headers["x-sluicegate-provider"] == "oai/second"


def test_first_content_too_late_fails_over_even_after_the_role_chunk(start: Any, fake_openai: Any) -> None:
    # The role chunk comes at once, the first words only after 1 s: time to first *token* is what counts.
    gw = start({"timeout": {"first_token": 0.4}})
    fake_openai.faults.append(Fault(pace=1.0))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert stream_text(raw.parse()) == TEXT
    assert raw.headers["x-sluicegate-provider"] == "oai/second"


def test_deployment_timeout_overrides_the_provider(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai, timeout={"first_token": 30})
    cfg["models"][0]["deployments"][0]["timeout"] = {"first_token": 0.3}
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(delay=1.5))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["x-sluicegate-provider"] == "oai/second"


def test_request_timeout_header_bounds_the_whole_request(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 3, "backoff": 0.01})
    fake_openai.faults.extend([Fault(delay=3.0)] * 4)
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(
            model="single", messages=MESSAGES, extra_headers={"x-sluicegate-timeout": "0.5"}
        )
    assert caught.value.status_code == 504
    assert len(fake_openai.requests) == 1, "no retry once the request's own timeout ran out"


def test_request_timeout_in_the_body_is_not_sent_upstream(start: Any, fake_openai: Any) -> None:
    gw = start()
    gw.openai().chat.completions.create(model="single", messages=MESSAGES, extra_body={"timeout": 20})
    assert "timeout" not in fake_openai.requests[-1].body


def test_invalid_overrides_are_400(start: Any) -> None:
    gw = start()
    for headers in ({"x-sluicegate-timeout": "soon"}, {"x-sluicegate-retries": "-1"}):
        with pytest.raises(openai.BadRequestError):
            gw.openai().chat.completions.create(model="smart", messages=MESSAGES, extra_headers=headers)


def test_retries_header_overrides_the_alias(start: Any, fake_openai: Any) -> None:
    gw = start({"retries": 0, "backoff": 0.01})
    fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="single", messages=MESSAGES, extra_headers={"x-sluicegate-retries": "2"}
    )
    assert raw.headers["x-sluicegate-attempts"] == "3"
    assert models(fake_openai) == ["only"] * 3


# --- garbled answers and errors hidden in a 200 ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_fails_over(start: Any, fake_openai: Any, stream: bool) -> None:
    gw = start()
    fake_openai.faults.append(Fault(malformed=True))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=stream)
    answer = raw.parse()
    assert (stream_text(answer) if stream else answer.choices[0].message.content) == TEXT
    assert raw.headers["x-sluicegate-provider"] == "oai/second"


def test_error_event_right_after_the_role_chunk_fails_over(start: Any, fake_openai: Any) -> None:
    # 200, a role-only chunk, then an error event: the role chunk was held back, so nothing reached the client.
    gw = start()
    fake_openai.faults.append(Fault(error_event_after=1))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert stream_text(chunks) == TEXT
    assert [c.choices[0].delta.role for c in chunks if c.choices].count("assistant") == 1
    assert raw.headers["x-sluicegate-provider"] == "oai/second"
    assert raw.headers["x-sluicegate-failed-attempts"] == "oai/first:502:upstream_stream_error"


def test_stream_cut_before_any_content_fails_over(start: Any, fake_openai: Any) -> None:
    gw = start()
    fake_openai.faults.append(Fault(cut_after=1))
    raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, stream=True)
    assert stream_text(raw.parse()) == TEXT
    assert raw.headers["x-sluicegate-attempts"] == "2"


def test_stream_cut_after_content_ends_with_an_error_event_and_is_recorded(start: Any, fake_openai: Any) -> None:
    gw = start()
    fake_openai.faults.append(Fault(cut_after=3))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert stream_text(received) == "Hello from"
    assert "cut off" in caught.value.message
    assert models(fake_openai) == ["first"], "no failover once content reached the client"
    record = gw.sink.wait(1)[0]
    assert record.status == 502 and record.error_code == "upstream_incomplete_response"
    assert [(a.status, a.error) for a in record.attempts] == [(502, "upstream_incomplete_response")]
    stats = {d["id"]: d for d in httpx.get(gw.url("/v1/deployments")).json()["data"]}["oai/first"]
    assert stats["failures_total"] == 1 and stats["in_flight"] == 0


def test_stalled_stream_is_cut_and_reported_as_an_error_event(start: Any, fake_openai: Any) -> None:
    gw = start({"timeout": {"inter_chunk": 0.3}})
    fake_openai.faults.append(Fault(pace=0.8))
    received = []
    with httpx.stream(
        "POST", gw.url("/v1/chat/completions"), json={"model": "single", "messages": MESSAGES, "stream": True}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(line[6:])
    assert '"content":"Hello"' in received[1].replace(" ", "")
    error = httpx.Response(200, content=received[-1]).json()["error"]
    assert error["code"] == "upstream_stream_stalled" and error["type"] == "timeout_error"
    assert "[DONE]" not in received
    record = gw.sink.wait(1)[0]
    assert record.error_code == "upstream_stream_stalled"


# --- embeddings and the library --------------------------------------------------------------------------


def test_embeddings_fail_over(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai)
    cfg["models"].append(
        {
            "name": "embed",
            "deployments": [{"provider": "oai", "model": "emb-a"}, {"provider": "oai", "model": "emb-b"}],
        }
    )
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(status=502))
    raw = gw.openai().embeddings.with_raw_response.create(model="embed", input="hello")
    assert raw.headers["x-sluicegate-provider"] == "oai/emb-b"
    assert len(raw.parse().data) == 1


async def test_library_fails_over_the_same_way(fake_openai: Any) -> None:
    gateway = Gateway(config_from_dict(config(fake_openai, {"retries": 1, "backoff": 0.01})))
    try:
        fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
        answer = await sluicegate.acompletion(model="smart", messages=MESSAGES, gateway=gateway)
        assert answer["choices"][0]["message"]["content"] == TEXT
        fake_openai.faults.append(Fault(cut_after=1))
        stream = await sluicegate.acompletion(model="smart", messages=MESSAGES, stream=True, gateway=gateway)
        text = "".join([c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]])
        assert text == TEXT
        # A cut before any content is retried like any other failure (retries: 1).
        assert models(fake_openai) == ["first", "first", "second", "first", "first"]
        fake_openai.faults.extend([Fault(status=500)] * 4)
        with pytest.raises(UpstreamError):
            await sluicegate.acompletion(model="smart", messages=MESSAGES, gateway=gateway)
        # The per-request overrides are keyword arguments in the library.
        fake_openai.reset()
        fake_openai.faults.extend([Fault(status=500)] * 3)
        answer = await sluicegate.acompletion(
            model="single", messages=MESSAGES, gateway=gateway, num_retries=3, fallbacks=[]
        )
        assert answer["choices"][0]["message"]["content"] == TEXT
        assert models(fake_openai) == ["only"] * 4
        assert all("num_retries" not in request.body for request in fake_openai.requests)
    finally:
        await gateway.aclose()
