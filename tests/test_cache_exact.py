"""The exact cache over HTTP with the openai SDK: hits, misses, controls, and stream <-> JSON replay."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.server import Fault
from tests.recording import RecordSink

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, cache: Any = True, **top: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [
            {"name": "cached", "deployments": [{"provider": "oai", "model": "gpt-4o"}], "cache": cache},
            {"name": "plain", "deployments": [{"provider": "oai", "model": "gpt-4o"}]},
        ],
        **top,
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any) -> Any:
    return gateway_factory(config(fake_openai))


def _chat(gw: Any, model: str = "cached", headers: dict[str, str] | None = None, **params: Any) -> Any:
    return gw.openai().chat.completions.with_raw_response.create(
        model=model, messages=params.pop("messages", MESSAGES), extra_headers=headers or {}, **params
    )


def _stream_text(gw: Any, model: str = "cached", **params: Any) -> tuple[str, Any, Any]:
    """(text, usage, headers) of a streamed answer read with the SDK."""
    raw = gw.openai().chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **params
    )
    text, usage = "", None
    for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    return text, usage, raw.headers


def test_second_identical_request_is_a_hit_without_calling_the_provider(gw: Any, fake_openai: Any) -> None:
    first = _chat(gw)
    second = _chat(gw)
    assert first.headers["x-sluicegate-cache"] == "miss"
    assert second.headers["x-sluicegate-cache"] == "hit"
    assert len(fake_openai.requests) == 1
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().usage.total_tokens == 18  # the client still sees the answer's usage
    assert "x-sluicegate-provider" not in second.headers


def test_a_hit_is_recorded_as_such_and_charged_nothing(gw: Any, fake_openai: Any) -> None:
    sink = RecordSink()
    gw.gateway.recorder.add(sink)
    _chat(gw)
    _chat(gw)
    miss, hit = sink.records[-2:]
    assert (miss.cache, hit.cache) == ("miss", "hit")
    assert miss.usage is not None and miss.usage.total_tokens == 18
    assert hit.usage is not None and hit.usage.total_tokens == 0 and hit.cost_usd == 0.0


def test_uncached_alias_is_untouched(gw: Any, fake_openai: Any) -> None:
    first, second = _chat(gw, "plain"), _chat(gw, "plain")
    assert "x-sluicegate-cache" not in first.headers and "x-sluicegate-cache" not in second.headers
    assert len(fake_openai.requests) == 2
    assert gw.gateway.cache.cached_aliases == ["cached"]


def test_irrelevant_fields_still_hit(gw: Any, fake_openai: Any) -> None:
    _chat(gw, user="alice")
    again = _chat(gw, user="bob", metadata={"run": "2"})
    assert again.headers["x-sluicegate-cache"] == "hit"
    assert len(fake_openai.requests) == 1


def test_key_reordered_raw_bodies_hit(gw: Any, fake_openai: Any) -> None:
    url = gw.url("/v1/chat/completions")
    one = b'{"model":"cached","temperature":0,"messages":[{"role":"user","content":"Say hello"}]}'
    two = b'{"messages":[{"content":"Say hello","role":"user"}],"temperature":0.0,"model":"cached"}'
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=one, headers=headers).headers["x-sluicegate-cache"] == "miss"
    assert httpx.post(url, content=two, headers=headers).headers["x-sluicegate-cache"] == "hit"
    assert len(fake_openai.requests) == 1


def test_json_answer_replays_as_a_valid_stream(gw: Any, fake_openai: Any) -> None:
    answer = _chat(gw).parse()
    text, usage, headers = _stream_text(gw)
    assert headers["x-sluicegate-cache"] == "hit"
    assert text == answer.choices[0].message.content
    assert usage is not None and usage.total_tokens == 18
    assert len(fake_openai.requests) == 1


def test_streamed_answer_is_stored_and_replays_as_json_and_as_stream(gw: Any, fake_openai: Any) -> None:
    text, _, headers = _stream_text(gw)
    assert headers["x-sluicegate-cache"] == "miss"
    json_answer = _chat(gw)
    assert json_answer.headers["x-sluicegate-cache"] == "hit"
    assert json_answer.parse().choices[0].message.content == text == "Hello from fake OpenAI."
    assert json_answer.parse().choices[0].finish_reason == "stop"
    again, _, headers = _stream_text(gw)
    assert again == text and headers["x-sluicegate-cache"] == "hit"
    assert len(fake_openai.requests) == 1


def test_streamed_tool_calls_replay_whole(gw: Any, fake_openai: Any) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    stream = gw.openai().chat.completions.create(model="cached", messages=MESSAGES, tools=[tool], stream=True)
    list(stream)
    answer = _chat(gw, tools=[tool])
    assert answer.headers["x-sluicegate-cache"] == "hit"
    call = answer.parse().choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')


def test_cut_stream_is_not_stored(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(cut_after=3))
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises on the broken stream; which class is its business
        list(gw.openai().chat.completions.create(model="cached", messages=MESSAGES, stream=True))
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"
    assert len(fake_openai.requests) == 2


def test_failed_request_is_not_stored(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(status=500))
    assert httpx.post(gw.url("/v1/chat/completions"), json={"model": "cached", "messages": MESSAGES}).status_code
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"
    assert _chat(gw).headers["x-sluicegate-cache"] == "hit"


async def test_truncated_answer_is_not_cached(fake_openai: Any) -> None:
    from sluicegate.config import config_from_dict
    from sluicegate.context import RequestContext
    from sluicegate.gateway import Gateway
    from sluicegate.providers.base import ChatResult, Usage

    gateway = Gateway(config_from_dict(config(fake_openai)))
    await gateway.start()
    try:
        request = {"model": "cached", "messages": MESSAGES}
        body = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"length"}]}'
        for finish, expected in ((b"length", None), (b"stop", body.replace(b"length", b"stop"))):
            ctx = RequestContext(authenticated=True)
            ctx.begin("chat", "cached", stream=False)
            assert await gateway.cache.lookup(request, ctx) is None
            await gateway.cache.store(request, ChatResult(body.replace(b"length", finish), Usage()), ctx)
            again = RequestContext(authenticated=True)
            again.begin("chat", "cached", stream=False)
            hit = await gateway.cache.lookup(request, again)
            assert (hit.body if hit else None) == expected
    finally:
        await gateway.aclose()


def test_no_cache_refreshes_and_no_store_leaves_no_trace(gw: Any, fake_openai: Any) -> None:
    bypass = _chat(gw, headers={"Cache-Control": "no-store"})
    assert bypass.headers["x-sluicegate-cache"] == "bypass"
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"  # no-store stored nothing
    refresh = _chat(gw, headers={"Cache-Control": "no-cache"})
    assert refresh.headers["x-sluicegate-cache"] == "bypass"
    assert len(fake_openai.requests) == 3  # no-cache went to the provider...
    assert _chat(gw).headers["x-sluicegate-cache"] == "hit"  # ...and its fresh answer was kept


def test_ttl_header_zero_does_not_store(gw: Any, fake_openai: Any) -> None:
    _chat(gw, headers={"x-sluicegate-cache-ttl": "0"})
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"
    bad = httpx.post(
        gw.url("/v1/chat/completions"),
        json={"model": "cached", "messages": MESSAGES},
        headers={"x-sluicegate-cache-ttl": "soon"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cache_ttl"


def test_expired_entries_miss(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, cache={"ttl": 0.05}))
    _chat(gw)
    import time

    time.sleep(0.1)
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"


def test_temperature_above_zero_bypasses_unless_configured(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai))
    assert _chat(gw, temperature=0.7).headers["x-sluicegate-cache"] == "bypass"
    assert _chat(gw, temperature=0.7).headers["x-sluicegate-cache"] == "bypass"
    assert _chat(gw, temperature=0).headers["x-sluicegate-cache"] == "miss"
    warm = gateway_factory(config(fake_openai, cache={"cache_temperature": True}))
    _chat(warm, temperature=0.7)
    assert _chat(warm, temperature=0.7).headers["x-sluicegate-cache"] == "hit"


def test_top_level_enabled_caches_every_alias_unless_it_opts_out(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, cache=False) | {"cache": {"enabled": True}})
    assert gw.gateway.cache.cached_aliases == ["plain"]
    _chat(gw, "plain")
    assert _chat(gw, "plain").headers["x-sluicegate-cache"] == "hit"
    assert "x-sluicegate-cache" not in _chat(gw, "cached").headers


def test_memory_backend_is_bounded_by_bytes(gateway_factory: Any, fake_openai: Any) -> None:
    from sluicegate.cache.memory import MemoryBackend

    gw = gateway_factory(config(fake_openai, cache={"namespace": "small"}) | {"cache": {"max_bytes": 2000}})
    backend = gw.gateway.cache.backend
    assert isinstance(backend, MemoryBackend)
    for index in range(10):
        _chat(gw, messages=[{"role": "user", "content": f"question {index}"}])
    assert backend.bytes <= 2000 and 0 < len(backend) < 10
    last = _chat(gw, messages=[{"role": "user", "content": "question 9"}])
    assert last.headers["x-sluicegate-cache"] == "hit"  # the most recent stay
    first = _chat(gw, messages=[{"role": "user", "content": "question 0"}])
    assert first.headers["x-sluicegate-cache"] == "miss"  # the oldest went


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"cache": {"semantic": {"mode": "learnt"}}}, "at cache.semantic.mode: Invalid enum value 'learnt'"),
        ({"cache": {"semantic": {"threshold": 1.5}}}, "at cache.semantic.threshold"),
        ({"cache": {"backend": "redis"}}, "at cache.url: cache.backend is redis but neither"),
        ({"idempotency": {"backend": "postgres"}}, "needs idempotency.url (or the top-level database_url)"),
        ({"cache": {"semantic": {"enabled": True, "model": "gateway:nope"}}}, "'nope' is not an alias"),
    ],
)
def test_config_mistakes_are_reported_with_their_path(fake_openai: Any, section: Any, message: str) -> None:
    from sluicegate.config import ConfigError, config_from_dict
    from sluicegate.gateway import Gateway

    with pytest.raises(ConfigError) as caught:
        Gateway(config_from_dict(config(fake_openai) | section))
    assert message in str(caught.value)
