"""The circuit breaker's cycle (closed -> open -> fail fast -> half-open probe -> closed) and the health
endpoint, over HTTP with the openai SDK."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai import TEXT
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]
#: trips after two failures, comes back for a probe half a second later
COOLDOWN = {"failures": 2, "window": 60, "duration": 0.5}


def config(fake: Any, models: list[str], cooldown: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-up", "base_url": fake.base_url + "/v1"}},
        "models": [
            {
                "name": "smart",
                "routing": {"cooldown": cooldown or COOLDOWN},
                "deployments": [{"provider": "oai", "model": model} for model in models],
            }
        ],
        **extra,
    }


def health(gw: Any, key: str | None = None) -> dict[str, dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(gw.url("/v1/deployments"), headers=headers)
    assert response.status_code == 200, response.text
    return {d["id"]: d for d in response.json()["data"]}


def wait_until_half_open(gw: Any, label: str) -> None:
    deadline = time.monotonic() + 5
    while health(gw)[label]["state"] != "half-open":
        assert time.monotonic() < deadline, "the cooldown never ended"
        time.sleep(0.05)


def ask(gw: Any) -> Any:
    # One client per gateway: creating a client (and its TLS context) costs more than the request.
    client = gw.__dict__.setdefault("client", gw.openai())
    return client.chat.completions.create(model="smart", messages=MESSAGES)


def test_cooldown_cycle_with_a_single_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"]))
    fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(gw)
    state = health(gw)["oai/only"]
    assert state["state"] == "open" and state["reason"] == "failing"
    assert state["failures_total"] == 2 and state["last_error"] == "upstream_500"

    # Open: fail fast with 503 and Retry-After, without waiting on the upstream.
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == 503 and caught.value.code == "deployments_cooling_down"
    assert caught.value.response.headers["retry-after"] == "1"
    assert len(fake_openai.requests) == 2

    # Half-open: the next request is the probe; its success closes the breaker.
    wait_until_half_open(gw, "oai/only")
    assert ask(gw).choices[0].message.content == TEXT
    state = health(gw)["oai/only"]
    assert state["state"] == "closed" and state["recent_error_rate"] == 0.0
    assert ask(gw).choices[0].message.content == TEXT
    assert len(fake_openai.requests) == 4


def test_a_failed_probe_opens_the_breaker_again(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"]))
    fake_openai.faults.extend([Fault(status=500)] * 3)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(gw)
    wait_until_half_open(gw, "oai/only")
    with pytest.raises(openai.InternalServerError):
        ask(gw)
    assert health(gw)["oai/only"]["state"] == "open"
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == 503
    assert len(fake_openai.requests) == 3


def test_only_one_probe_at_a_time(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"]))
    fake_openai.faults.extend([Fault(status=500), Fault(status=500), Fault(delay=0.6)])
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(gw)
    wait_until_half_open(gw, "oai/only")
    probe: list[Any] = []
    thread = threading.Thread(target=lambda: probe.append(ask(gw)))
    thread.start()
    deadline = time.monotonic() + 5
    while len(fake_openai.requests) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # While the probe is out, other requests fail fast instead of piling onto a deployment that may be down.
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == 503
    assert health(gw)["oai/only"]["in_flight"] == 1
    thread.join(5)
    assert probe and probe[0].choices[0].message.content == TEXT
    assert health(gw)["oai/only"]["state"] == "closed"


def test_a_failing_deployment_is_taken_out_of_rotation(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["first", "second"], {"failures": 2, "duration": 60}))
    fake_openai.faults.extend([Fault(status=500), Fault(), Fault(status=500)])
    for _ in range(6):
        raw = gw.openai().chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
        assert raw.headers["x-sluicegate-provider"] == "oai/second"
    sent = [request.body["model"] for request in fake_openai.requests]
    # Two failures on `first`, then it is no longer asked: the rest goes straight to `second`.
    assert sent == ["first", "second", "first", "second", "second", "second", "second", "second"]
    states = health(gw)
    assert states["oai/first"]["state"] == "open" and states["oai/second"]["state"] == "closed"


def test_min_error_rate_keeps_a_mostly_healthy_deployment_in(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"], {"failures": 2, "min_error_rate": 0.5}))
    fake_openai.faults.extend([Fault()] * 6 + [Fault(status=500), Fault(), Fault(status=500)])
    for _ in range(9):
        with contextlib.suppress(openai.InternalServerError):
            ask(gw)
    state = health(gw)["oai/only"]
    # 2 failures out of 9 attempts is below 50%: still in rotation.
    assert state["state"] == "closed" and state["failures_total"] == 2
    assert abs(state["recent_error_rate"] - 2 / 9) < 0.01


def test_breaker_can_be_turned_off(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"], {"failures": 0}))
    fake_openai.faults.extend([Fault(status=500)] * 5)
    for _ in range(5):
        with pytest.raises(openai.InternalServerError):
            ask(gw)
    assert health(gw)["oai/only"]["state"] == "closed"
    assert len(fake_openai.requests) == 5


def test_health_endpoint_shows_state_error_rate_latency_and_in_flight(gateway_factory: Any, fake_openai: Any) -> None:
    cfg = config(fake_openai, ["first", "second"])
    cfg["models"][0]["deployments"][0].update({"max_concurrent": 10, "rpm": 100})
    gw = gateway_factory(cfg)
    fake_openai.faults.append(Fault(status=500))
    ask(gw)
    ask(gw)
    data = health(gw)
    first, second = data["oai/first"], data["oai/second"]
    assert first["aliases"] == ["smart"] and first["provider"] == "oai" and first["model"] == "first"
    assert first["state"] == "closed" and first["requests_total"] == 2 and first["failures_total"] == 1
    assert first["recent_error_rate"] == 0.5 and first["last_error"] == "upstream_500"
    assert first["latency_ms"] > 0 and first["in_flight"] == 0
    assert first["limits"]["max_concurrent"] == 10 and first["limits"]["requests_this_minute"] == 2
    assert second["requests_total"] == 1 and second["recent_error_rate"] == 0.0


def test_a_client_leaving_a_stream_releases_the_deployment(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"]))
    fake_openai.faults.append(Fault(pace=0.2))
    with httpx.stream(
        "POST", gw.url("/v1/chat/completions"), json={"model": "smart", "messages": MESSAGES, "stream": True}
    ) as response:
        for line in response.iter_lines():
            if '"Hello"' in line:
                assert health(gw)["oai/only"]["in_flight"] == 1
                break
    deadline = time.monotonic() + 5
    while health(gw)["oai/only"]["in_flight"]:
        assert time.monotonic() < deadline, "the abandoned stream kept its slot"
        time.sleep(0.02)
    state = health(gw)["oai/only"]
    assert state["failures_total"] == 0, "a client leaving is not the deployment's failure"


def test_health_endpoint_needs_the_admin_key(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, ["only"], master_key="sk-admin"))
    assert httpx.get(gw.url("/v1/deployments")).status_code == 401
    assert "oai/only" in health(gw, "sk-admin")
