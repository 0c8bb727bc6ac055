"""The command line: check-config, and `sluicegate serve` as a real process answering the openai SDK."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

SLUICEGATE = [sys.executable, "-m", "sluicegate"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLUICEGATE, *args], capture_output=True, text=True, timeout=60, env=env)


def test_check_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("providers:\n  d: {type: demo}\nmodels:\n  - {name: m, deployments: [{provider: d, model: x}]}\n")
    result = run("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK (1 providers, 1 aliases)" in result.stdout


def test_check_config_error_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers:\n  d: {type: demo, tiemout: 3}\n")
    result = run("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"sluicegate: config error: {path}: at providers.d: unknown key `tiemout`"
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_without_config_answers_from_demo_provider() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "SLUICEGATE_MASTER_KEY"}
    process = subprocess.Popen(
        [*SLUICEGATE, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/health/readiness").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.1)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "ping"}])
        assert answer.choices[0].message.content == "Hello from Sluicegate's demo provider. You said: ping"
        assert answer.usage is not None and answer.usage.total_tokens > 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    # uvicorn re-raises the signal after a clean shutdown, so the exit status is the signal's.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in stderr
    assert "OPEN to anyone" in stderr
