"""Structured request logs: one JSON object per finished request on `sluicegate.requests`, never a secret."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from sluicegate.config import ConfigError, config_from_dict
from sluicegate.gateway import Gateway
from sluicegate.observability.logs import LOGGER_NAME
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "My secret plan is tulips"}]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def wait(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.lines) >= count, f"expected {count} log lines, got {self.lines}"
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger(LOGGER_NAME)
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def config(fake: Any, tmp_path: Any, **observability: Any) -> dict[str, Any]:
    return {
        "master_key": "sk-master-do-not-log",
        # keys and spend need a database once a master key is set; keep it out of the working directory
        "database_url": f"sqlite:///{tmp_path}/keys.db",
        "providers": {
            "oai": {"type": "openai", "api_key": "sk-upstream-do-not-log", "base_url": fake.base_url + "/v1"}
        },
        "models": [
            {
                "name": "smart",
                "deployments": [{"provider": "oai", "model": "gpt-4o"}],
                "routing": {"retries": 1, "backoff": 0},
            }
        ],
        "observability": {"log_requests": True, "log_store": {"enabled": False}, **observability},
    }


def test_one_json_line_per_request_with_ids_route_usage_and_timing(
    gateway_factory: Callable[[dict[str, Any]], Any], fake_openai: Any, lines: Lines, tmp_path: Any
) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path))
    fake_openai.faults.append(Fault(status=503))
    raw = gw.openai(api_key="sk-master-do-not-log").chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES
    )
    [entry] = lines.wait(1)
    assert entry["request_id"] == raw.headers["x-request-id"]
    assert entry["alias"] == "smart" and entry["deployment"] == "oai/gpt-4o" and entry["provider"] == "oai"
    assert entry["status"] == 200 and entry["endpoint"] == "chat" and entry["stream"] is False
    assert [a["status"] for a in entry["attempts"]] == [503, 200]
    assert entry["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert entry["latency_ms"] > 0 and entry["timestamp"].endswith("Z")
    assert {"cost_usd", "cache", "guardrails", "key_id", "ttft_ms", "error_code"} <= set(entry)
    assert "prompt" not in entry


def test_failures_are_logged_and_secrets_and_prompts_never_are(
    gateway_factory: Callable[[dict[str, Any]], Any], fake_openai: Any, lines: Lines, tmp_path: Any
) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path))
    client = gw.openai(api_key="sk-master-do-not-log")
    client.chat.completions.create(model="smart", messages=MESSAGES)
    fake_openai.faults.append(Fault(status=400))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smart", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        gw.openai(api_key="sk-wrong-key-do-not-log").chat.completions.create(model="smart", messages=MESSAGES)
    entries = lines.wait(2)
    assert [e["status"] for e in entries[:2]] == [200, 400]
    assert entries[1]["error_code"]
    text = "\n".join(lines.lines)
    for secret in ("sk-master-do-not-log", "sk-upstream-do-not-log", "sk-wrong-key-do-not-log", "tulips"):
        assert secret not in text


def test_prompts_are_logged_only_when_enabled(
    gateway_factory: Callable[[dict[str, Any]], Any], fake_openai: Any, lines: Lines, tmp_path: Any
) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path, log_prompts=True))
    stream = gw.openai(api_key="sk-master-do-not-log").chat.completions.create(
        model="smart", messages=MESSAGES, stream=True
    )
    for _ in stream:
        pass
    [entry] = lines.wait(1)
    assert entry["prompt"] == MESSAGES
    assert entry["stream"] is True and entry["ttft_ms"] is not None


def test_without_a_handler_lines_go_to_stdout_as_bare_json(capfd: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from sluicegate.context import RequestRecord
    from sluicegate.observability.logs import RequestLogSink

    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    logger.handlers.clear()

    async def run() -> None:
        sink = RequestLogSink()
        await sink.start()
        sink.emit(RequestRecord(request_id="abc123", alias="smart", latency_ms=12.5))
        await sink.aclose()

    try:
        asyncio.run(run())
    finally:
        logger.handlers[:] = saved[0]
        logger.propagate, logger.level = saved[1], saved[2]
    out = capfd.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["request_id"] == "abc123"


def test_config_mistakes_are_reported_with_their_path() -> None:
    base = {"providers": {}, "models": []}
    with pytest.raises(ConfigError, match=r"observability\.callbacks\[0\]\.type"):
        Gateway(config_from_dict({**base, "observability": {"callbacks": [{"type": "pager", "url": "http://x"}]}}))
    with pytest.raises(ConfigError, match="public_key and secret_key"):
        Gateway(config_from_dict({**base, "observability": {"callbacks": [{"type": "langfuse", "url": "http://x"}]}}))
    with pytest.raises(ConfigError, match=r"observability\.log_store\.retention_days"):
        Gateway(config_from_dict({**base, "observability": {"log_store": {"retention_days": 0}}}))
    with pytest.raises(ConfigError, match=r"tracing\.exporter"):
        Gateway(config_from_dict({**base, "observability": {"tracing": {"exporter": "zipkin"}}}))
