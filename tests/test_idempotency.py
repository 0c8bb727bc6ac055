"""`Idempotency-Key` over HTTP: replays, conflicts, waiting repeats, failures, and a gateway restart in between."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.server import Fault
from tests.recording import RecordSink

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, tmp_path: Path, **idempotency: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
        "idempotency": {"url": str(tmp_path / "idempotency.db"), **idempotency},
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> Any:
    return gateway_factory(config(fake_openai, tmp_path))


def _chat(gw: Any, key: str | None, **params: Any) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return gw.openai().chat.completions.with_raw_response.create(
        model="smart", messages=params.pop("messages", MESSAGES), extra_headers=headers, **params
    )


def _post(gw: Any, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url("/v1/chat/completions"), json=body, headers={"Idempotency-Key": key}, timeout=30)


def _chat_requests(fake: Any) -> int:
    return sum(1 for request in fake.requests if request.path.endswith("/chat/completions"))


def test_repeat_with_the_same_key_replays_without_calling_the_provider(gw: Any, fake_openai: Any) -> None:
    sink = RecordSink()
    gw.gateway.recorder.add(sink)
    first = _chat(gw, "job-1-step-1")
    second = _chat(gw, "job-1-step-1")
    assert _chat_requests(fake_openai) == 1
    assert second.parse().model_dump() == first.parse().model_dump()  # byte for byte the same answer
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    ran, replayed = sink.records[-2:]
    assert ran.cache is None and ran.usage is not None and ran.usage.total_tokens == 18
    assert replayed.cache == "idempotent-replay" and replayed.cost_usd == 0.0
    assert replayed.usage is not None and replayed.usage.total_tokens == 0  # nothing to charge again


def test_without_a_key_every_request_runs(gw: Any, fake_openai: Any) -> None:
    _chat(gw, None)
    _chat(gw, None)
    assert _chat_requests(fake_openai) == 2


def test_same_key_with_another_body_is_422(gw: Any, fake_openai: Any) -> None:
    _chat(gw, "k-conflict")
    other = _post(gw, "k-conflict", {"model": "smart", "messages": [{"role": "user", "content": "Something else"}]})
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and "k-conflict" in error["message"]
    assert "different request body" in error["message"]
    assert _chat_requests(fake_openai) == 1


def test_keys_are_scoped_to_the_body_not_to_streaming(gw: Any, fake_openai: Any) -> None:
    """A streamed first call replays as JSON, and a JSON first call replays as a stream."""
    stream = gw.openai().chat.completions.create(
        model="smart", messages=MESSAGES, stream=True, extra_headers={"Idempotency-Key": "k-stream"}
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    replay = _chat(gw, "k-stream")
    assert replay.parse().choices[0].message.content == streamed == "Hello from fake OpenAI."
    _chat(gw, "k-json")
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True, extra_headers={"Idempotency-Key": "k-json"}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "Hello from fake OpenAI." and raw.headers["idempotent-replayed"] == "true"
    assert _chat_requests(fake_openai) == 2


def test_a_failed_request_is_not_stored_so_the_retry_runs(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(status=500))
    failed = _post(gw, "k-retry", {"model": "smart", "messages": MESSAGES})
    assert failed.status_code >= 500
    retried = _chat(gw, "k-retry")
    assert retried.parse().choices[0].message.content == "Hello from fake OpenAI."
    assert "idempotent-replayed" not in retried.headers
    assert _chat_requests(fake_openai) == 2
    assert _chat(gw, "k-retry").headers["idempotent-replayed"] == "true"
    assert _chat_requests(fake_openai) == 2


def test_a_stream_cut_short_is_not_stored(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(cut_after=3))
    with pytest.raises(openai.APIError):
        list(
            gw.openai().chat.completions.create(
                model="smart", messages=MESSAGES, stream=True, extra_headers={"Idempotency-Key": "k-cut"}
            )
        )
    assert "idempotent-replayed" not in _chat(gw, "k-cut").headers
    assert _chat_requests(fake_openai) == 2


def test_a_concurrent_repeat_waits_for_the_first(gw: Any, fake_openai: Any) -> None:
    fake_openai.faults.append(Fault(delay=0.5))
    results: list[httpx.Response] = []

    def call() -> None:
        results.append(_post(gw, "k-concurrent", {"model": "smart", "messages": MESSAGES}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert _chat_requests(fake_openai) == 1
    assert len({r.content for r in results}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == 2


def test_keys_of_different_callers_do_not_meet(gw: Any, fake_openai: Any) -> None:
    from sluicegate.cache.idempotency import Claim

    idempotency = gw.gateway.cache.idempotency
    import asyncio

    async def both() -> tuple[Any, Any]:
        a = await idempotency.begin("shared", "key-a", "f1")
        b = await idempotency.begin("shared", "key-b", "f2")
        for claim in (a, b):
            await idempotency.complete(claim, b"{}")
        return a, b

    first, second = asyncio.run(both())
    assert isinstance(first, Claim) and isinstance(second, Claim)


def test_invalid_key_is_400(gw: Any) -> None:
    response = _post(gw, "x" * 300, {"model": "smart", "messages": MESSAGES})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_memory_backend_needs_no_file(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path, backend="memory"))
    _chat(gw, "k-mem")
    assert _chat(gw, "k-mem").headers["idempotent-replayed"] == "true"
    assert not (tmp_path / "idempotency.db").exists()


# --- a real `sluicegate serve` killed between the two calls -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(config_path: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sluicegate", "serve", "--config", str(config_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLUICEGATE_LOG_LEVEL": "WARNING"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/readiness").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gateway did not start: {process.communicate()[1]}")
        time.sleep(0.1)


def test_replay_survives_killing_and_restarting_the_gateway(fake_openai: Any, tmp_path: Path) -> None:
    database = tmp_path / "idempotency.db"
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(
        "providers:\n"
        f"  oai: {{type: openai, api_key: sk-upstream, base_url: '{fake_openai.base_url}/v1'}}\n"
        "models:\n"
        "  - {name: smart, deployments: [{provider: oai, model: gpt-4o}]}\n"
        f"idempotency: {{backend: sqlite, url: '{database}'}}\n"
    )
    port = _free_port()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    headers = {"Idempotency-Key": "workflow-7/step-3"}

    first_process = _serve(config_path, port)
    try:
        first = client.chat.completions.create(model="smart", messages=MESSAGES, extra_headers=headers)
    finally:
        first_process.send_signal(signal.SIGKILL)  # a crash, not a graceful shutdown
        first_process.communicate(timeout=10)
    assert database.exists()

    second_process = _serve(config_path, port)
    try:
        raw = client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES, extra_headers=headers)
        conflict = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "smart", "messages": [{"role": "user", "content": "another step"}]},
            headers=headers,
        )
    finally:
        second_process.send_signal(signal.SIGTERM)
        second_process.communicate(timeout=20)
    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.parse().model_dump() == first.model_dump()
    assert conflict.status_code == 422
    assert _chat_requests(fake_openai) == 1  # the provider was called once across both gateway processes
