"""Helpers shared by the governance tests: configs, the admin API, a fake with rich usage, gateway processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault

MASTER = "sk-master-governance-test"


def chat_config(fake: Any, *, master_key: str | None = MASTER, **extra: Any) -> dict[str, Any]:
    """One OpenAI-compatible provider behind the aliases `smart` and `cheap` (priced as gpt-4o / gpt-4o-mini)."""
    config: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": fake.base_url + "/v1", "api_key": "sk-upstream"}},
        "models": [
            {"name": "smart", "deployments": [{"provider": "up", "model": "gpt-4o"}]},
            {"name": "cheap", "deployments": [{"provider": "up", "model": "gpt-4o-mini"}]},
        ],
        **extra,
    }
    if master_key is not None:
        config["master_key"] = master_key
    return config


class Admin:
    """The admin API over HTTP, as an operator's script would call it."""

    def __init__(self, base_url: str, key: str = MASTER) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def create_key(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/admin/keys", json={"name": "test", **body})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def create_team(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/admin/teams", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def spend(self, group_by: str = "key", **params: str) -> dict[str, Any]:
        response = self.client.get("/admin/spend", params={"group_by": group_by, **params})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)


def chat(base_url: str, key: str | None, model: str = "smart", **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **body}
    return httpx.post(base_url + "/v1/chat/completions", json=payload, headers=headers, timeout=30)


class RichUsageOpenAI(FakeOpenAI):
    """The OpenAI fake, reporting the usage a test sets: cached prompt tokens and reasoning tokens included."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Any] = {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
        #: streams only: send no usage at all, as some OpenAI-compatible servers do
        self.stream_usage = True

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/v1/chat/completions", RichUsageOpenAI._chat),
            ("POST", "/v1/embeddings", FakeOpenAI._embeddings),
        ]

    async def _chat(self, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
        from tests.fakes.openai import _answer, _chunks
        from tests.fakes.server import send_sse

        model = body.get("model")
        message = _answer(body, self.text)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-rich",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": self.usage,
                }
            )
        usage = self.usage if self.stream_usage else None
        events: list[tuple[str | None, Any]] = [(None, chunk) for chunk in _chunks(model, message, usage)]
        events.append((None, "[DONE]"))
        return await send_sse(request, events, fault)


async def create_pg_schema(base_url: str) -> tuple[str, str]:
    """A fresh schema in the test database: (URL whose search_path is that schema, schema name)."""
    import asyncpg  # type: ignore[import-untyped]

    schema = f"sg_test_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(base_url)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}search_path={schema}", schema


async def drop_pg_schema(base_url: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(base_url)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """`python -m sluicegate serve --config ...` in a subprocess, as an operator runs it."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        name: str = "gw",
        env: dict[str, str] | None = None,
        *,
        wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.path = workdir / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        environment = {**os.environ, "SLUICEGATE_LOG_LEVEL": "DEBUG", **(env or {})}
        environment.pop("SLUICEGATE_MASTER_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sluicegate", "serve", "--config", str(self.path), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=workdir,
        )
        if wait:
            self.wait_ready()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start-up:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/health/readiness", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not start:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        finally:
            self._log.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
        self._log.close()
