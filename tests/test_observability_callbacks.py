"""Callbacks to external tools: a generic webhook and Langfuse's ingestion API, against a receiver on a socket."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from sluicegate.context import RequestRecord
from sluicegate.observability.callbacks import WebhookCallback
from sluicegate.observability.config import CallbackConfig

MESSAGES = [{"role": "user", "content": "Say hello"}]


class Receiver:
    """An HTTP endpoint in its own thread and loop that records every POST and answers from a script."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: deque[int] = deque()
        self.stall = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        while self.stall.is_set():
            await asyncio.sleep(0.01)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.bodies.append(await request.json())
        status = self.statuses.popleft() if self.statuses else 200
        return web.json_response({"successes": [], "errors": []}, status=status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.stall.clear()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait(self, count: int) -> list[Any]:
        deadline = time.monotonic() + 10
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.bodies) >= count, f"expected {count} deliveries, got {len(self.bodies)}"
        return self.bodies


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def config(fake: Any, tmp_path: Path, callbacks: list[dict[str, Any]], **observability: Any) -> dict[str, Any]:
    return {
        "master_key": "sk-master",
        "database_url": f"sqlite:///{tmp_path}/keys.db",
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
        "observability": {"log_store": {"enabled": False}, "callbacks": callbacks, **observability},
    }


def test_webhook_receives_each_finished_request(
    gateway_factory: Any, fake_openai: Any, receiver: Receiver, tmp_path: Path
) -> None:
    hook = {"type": "webhook", "url": receiver.url + "/hook", "headers": {"x-token": "t0k"}, "flush_interval": 0.05}
    gw = gateway_factory(config(fake_openai, tmp_path, [hook]))
    client = gw.openai(api_key="sk-master")
    ids = [client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES) for _ in range(3)]
    deadline = time.monotonic() + 10
    delivered: list[dict[str, Any]] = []
    while len(delivered) < 3 and time.monotonic() < deadline:
        delivered = [r for body in receiver.bodies for r in body["records"]]
        time.sleep(0.02)
    assert sorted(r["request_id"] for r in delivered) == sorted(raw.headers["x-request-id"] for raw in ids)
    assert all(body["source"] == "sluicegate" for body in receiver.bodies)
    first = delivered[0]
    assert first["alias"] == "smart" and first["status"] == 200 and first["usage"]["total_tokens"] == 18
    assert "prompt" not in first
    assert receiver.headers[0]["x-token"] == "t0k"
    assert "sk-master" not in str(receiver.bodies) and "sk-upstream" not in str(receiver.bodies)


def test_langfuse_gets_a_trace_and_a_generation_per_request(
    gateway_factory: Any, fake_openai: Any, receiver: Receiver, tmp_path: Path
) -> None:
    langfuse = {
        "type": "langfuse",
        "url": receiver.url,
        "public_key": "pk-lf-1",
        "secret_key": "sk-lf-1",
        "include_prompts": True,
        "flush_interval": 0.05,
    }
    gw = gateway_factory(config(fake_openai, tmp_path, [langfuse], log_prompts=True))
    stream = gw.openai(api_key="sk-master").chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    for _ in stream:
        pass
    [body] = receiver.wait(1)
    auth = receiver.headers[0]["authorization"]
    assert auth == "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-1").decode()
    trace, generation = body["batch"]
    assert trace["type"] == "trace-create" and generation["type"] == "generation-create"
    assert trace["id"] != generation["id"]  # event ids are unique for Langfuse's de-duplication
    assert generation["body"]["traceId"] == trace["body"]["id"]
    gen = generation["body"]
    assert gen["model"] == "gpt-4o" and gen["level"] == "DEFAULT"
    assert gen["usageDetails"] == {"input": 11, "output": 7, "total": 18}
    assert gen["startTime"] <= gen["completionStartTime"] <= gen["endTime"]
    assert gen["input"] == MESSAGES and trace["body"]["input"] == MESSAGES
    assert trace["body"]["tags"] == ["smart"]


async def test_failed_deliveries_are_retried_then_dropped_and_counted(receiver: Receiver) -> None:
    sink = WebhookCallback(
        CallbackConfig(type="webhook", url=receiver.url, retries=2, flush_interval=0.01, batch_size=10), "cb"
    )
    receiver.statuses.extend([500, 503, 502])  # the first batch fails three times: given up
    await sink.start()
    sink.emit(RequestRecord(request_id="lost"))
    deadline = time.monotonic() + 10
    while sink.queue.dropped == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sink.queue.dropped == 1 and len(receiver.bodies) == 3
    sink.emit(RequestRecord(request_id="kept"))
    await sink.queue.drain()
    assert receiver.bodies[-1]["records"][0]["request_id"] == "kept"
    await sink.aclose()


async def test_a_refusing_receiver_is_not_retried(receiver: Receiver) -> None:
    sink = WebhookCallback(CallbackConfig(type="webhook", url=receiver.url, retries=3, flush_interval=0.01), "cb")
    receiver.statuses.append(400)
    await sink.start()
    sink.emit(RequestRecord(request_id="refused"))
    await sink.queue.drain()
    assert len(receiver.bodies) == 1 and sink.queue.dropped == 1
    await sink.aclose()


def test_a_hanging_receiver_never_blocks_requests(
    gateway_factory: Any, fake_openai: Any, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stall.set()
    hook = {"type": "webhook", "url": receiver.url, "flush_interval": 0.01, "batch_size": 1, "max_queue": 3}
    gw = gateway_factory(config(fake_openai, tmp_path, [hook]))
    client = gw.openai(api_key="sk-master")
    for _ in range(10):
        assert client.chat.completions.create(model="smart", messages=MESSAGES).choices
    metrics = httpx.get(gw.url("/metrics")).text
    depth = next(
        line
        for line in metrics.splitlines()
        if line.startswith('sluicegate_observability_queue_depth{sink="callback-0')
    )
    assert float(depth.split()[-1]) <= 3
    dropped = next(
        line
        for line in metrics.splitlines()
        if line.startswith('sluicegate_observability_dropped_total{sink="callback-0')
    )
    assert float(dropped.split()[-1]) >= 10 - 3 - 1
