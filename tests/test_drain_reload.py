"""Drain on SIGTERM and reload on SIGHUP / file change, against real `sluicegate serve` processes."""

from __future__ import annotations

import json
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
import pytest
import yaml

from tests.fakes.server import Fault

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Say hello"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """`python -m sluicegate serve --config FILE` on a free port, its log in a file."""

    def __init__(self, config_path: Path, log_path: Path, port: int | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), SLUICEGATE_LOG_LEVEL="INFO")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sluicegate",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(self.config_path.parent),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.base_url + "/health/readiness", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not become ready: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def chat(self, client: httpx.Client, model: str = "smart", **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": MESSAGES, **extra}
        return client.post(self.base_url + "/v1/chat/completions", json=body, timeout=10)


def write_config(path: Path, document: dict[str, Any]) -> None:
    # Written beside and renamed, as editors and ConfigMap updates do: the watcher never reads half a file.
    scratch = path.with_suffix(".tmp")
    scratch.write_text(yaml.safe_dump(document))
    os.replace(scratch, path)


def base_config(fake: Any, model: str = "gpt-4o", **server: Any) -> dict[str, Any]:
    return {
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": model}]}],
        "server": {"drain_delay": 1.0, "shutdown_grace": 10, **server},
    }


class StreamReader(threading.Thread):
    """Reads one SSE answer; `started` is set at the first event."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.started = threading.Event()
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {"model": "smart", "messages": MESSAGES, "stream": True}
        try:
            with httpx.stream("POST", self.url + "/v1/chat/completions", json=body, timeout=20) as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
                        self.started.set()
        except BaseException as exc:
            self.error = exc
            self.started.set()

    def text(self) -> str:
        parts = []
        for event in self.events:
            if event == "[DONE]":
                continue
            for choice in json.loads(event).get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_sigterm_drains_streams_and_exits_zero(workdir: Path, fake_openai: Any) -> None:
    config = workdir / "gateway.yaml"
    write_config(config, base_config(fake_openai))
    gateway = GatewayProcess(config, workdir / "gateway.log").start()
    try:
        fake_openai.faults.append(Fault(pace=0.4))
        stream = StreamReader(gateway.base_url)
        stream.start()
        assert stream.started.wait(10) and stream.error is None
        gateway.signal(signal.SIGTERM)
        # Within drain_delay the listener is open and readiness says 503, so a balancer takes us out.
        readiness = httpx.get(gateway.base_url + "/health/readiness", timeout=2)
        assert readiness.status_code == 503
        assert readiness.json() == {"status": "draining"}
        stream.join(20)
        assert stream.error is None
        assert stream.events[-1] == "[DONE]"
        assert stream.text() == "Hello from fake OpenAI."
        assert gateway.proc is not None
        assert gateway.proc.wait(20) == 0
        assert "SIGTERM: readiness is now false" in gateway.log()
        with pytest.raises(httpx.ConnectError):
            httpx.get(gateway.base_url + "/health/liveness", timeout=1)
    finally:
        gateway.stop()


def _wait_for_model(gateway: GatewayProcess, fake: Any, model: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            assert gateway.chat(client).status_code == 200
            if fake.requests[-1].body["model"] == model:
                return
            time.sleep(0.1)
    raise AssertionError(f"requests never reached {model}: {gateway.log()}")


def test_file_change_reloads_while_an_old_stream_finishes(workdir: Path, fake_openai: Any) -> None:
    config = workdir / "gateway.yaml"
    write_config(config, base_config(fake_openai))
    gateway = GatewayProcess(config, workdir / "gateway.log").start()
    try:
        fake_openai.faults.append(Fault(pace=0.4))
        stream = StreamReader(gateway.base_url)
        stream.start()
        assert stream.started.wait(10) and stream.error is None
        write_config(config, base_config(fake_openai, model="gpt-4o-mini"))
        _wait_for_model(gateway, fake_openai, "gpt-4o-mini")
        stream.join(20)
        assert stream.error is None and stream.events[-1] == "[DONE]"
        assert stream.text() == "Hello from fake OpenAI."
        streamed = [r for r in fake_openai.requests if r.body.get("stream")]
        assert streamed[0].body["model"] == "gpt-4o"  # the stream kept the old config's deployment
        assert "config reloaded from" in gateway.log()
    finally:
        gateway.stop()


def test_invalid_file_is_refused_and_the_old_config_keeps_serving(workdir: Path, fake_openai: Any) -> None:
    config = workdir / "gateway.yaml"
    write_config(config, base_config(fake_openai, watch_config=False))
    gateway = GatewayProcess(config, workdir / "gateway.log").start()
    try:
        broken = base_config(fake_openai, watch_config=False)
        broken["models"] = [{"name": "smart", "deployments": []}]
        write_config(config, broken)
        gateway.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "refused" not in gateway.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        refusals = [line for line in gateway.log().splitlines() if "config reload (SIGHUP) refused" in line]
        assert len(refusals) == 1, gateway.log()
        assert "an alias needs at least one deployment" in refusals[0]
        with httpx.Client() as client:
            answer = gateway.chat(client)
        assert answer.status_code == 200
        assert fake_openai.requests[-1].body["model"] == "gpt-4o"
        # A valid file with SIGHUP is taken (watch_config is off: the signal alone triggers it).
        write_config(config, base_config(fake_openai, model="gpt-4o-mini", watch_config=False))
        gateway.signal(signal.SIGHUP)
        _wait_for_model(gateway, fake_openai, "gpt-4o-mini")
    finally:
        gateway.stop()
