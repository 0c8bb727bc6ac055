"""The Redis cache backend: shared between replicas, and never the reason a request fails.

The down/slow tests run their own redis-server on a free port (the machine's shared Redis on 6379 is never
stopped or paused); the replica test uses the shared one under its own key prefix and cleans up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.services import redis_url

pytestmark = pytest.mark.service

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, url: str, namespace: str) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}], "cache": True}],
        "cache": {"backend": "redis", "url": url, "namespace": namespace, "timeout": 0.05},
    }


def _chat(gw: Any) -> Any:
    return gw.openai(timeout=10).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test may stop, start and pause."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("redis-server is not installed; under CI=true service tests must run", pytrace=False)
            pytest.skip("redis-server is not installed")
        self.binary = binary
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "own redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def test_replicas_share_answers_through_redis(gateway_factory: Any, fake_openai: Any) -> None:
    url = redis_url()
    namespace = f"sluicegate-test-cache-{uuid.uuid4().hex[:8]}"
    first = gateway_factory(config(fake_openai, url, namespace))
    second = gateway_factory(config(fake_openai, url, namespace))
    try:
        assert _chat(first).headers["x-sluicegate-cache"] == "miss"
        assert _chat(second).headers["x-sluicegate-cache"] == "hit"
        assert len(fake_openai.requests) == 1
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{namespace}:*"))
        assert len(keys) == 1 and 0 < client.pttl(keys[0]) <= 3600 * 1000
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)


def test_redis_down_serves_uncached_and_recovers_without_restart(
    gateway_factory: Any, fake_openai: Any, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    gw = gateway_factory(config(fake_openai, own_redis.url, "down-test"))
    assert _chat(gw).headers["x-sluicegate-cache"] == "miss"
    assert _chat(gw).headers["x-sluicegate-cache"] == "hit"

    own_redis.stop()
    with caplog.at_level("WARNING", logger="sluicegate.cache"):
        during = [_chat(gw) for _ in range(3)]
    assert all(r.http_response.status_code == 200 for r in during)
    assert all(r.headers["x-sluicegate-cache"] == "miss" for r in during)
    assert len(fake_openai.requests) == 4  # served by the provider while the cache was gone
    warnings = [r for r in caplog.records if "serving uncached" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per request

    own_redis.start()  # an empty Redis again, same address
    deadline = time.monotonic() + 10
    while _chat(gw).headers["x-sluicegate-cache"] != "hit":  # the back-off passes, then it stores and hits
        assert time.monotonic() < deadline, "the cache did not come back after Redis did"
        time.sleep(0.2)


def test_slow_redis_does_not_hold_requests(gateway_factory: Any, fake_openai: Any, own_redis: OwnRedis) -> None:
    gw = gateway_factory(config(fake_openai, own_redis.url, "slow-test"))
    _chat(gw)
    blocker = threading.Thread(target=lambda: redis.Redis(port=own_redis.port).execute_command("DEBUG", "SLEEP", 3))
    blocker.start()
    time.sleep(0.2)  # Redis is now stuck in DEBUG SLEEP
    answer = _chat(gw)
    still_stuck = blocker.is_alive()
    blocker.join(10)
    assert answer.http_response.status_code == 200
    assert answer.headers["x-sluicegate-cache"] == "miss"  # the hit was not waited for...
    assert still_stuck  # ...the answer came while Redis was still asleep
