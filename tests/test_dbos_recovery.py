"""A DBOS workflow killed between the provider's answer and DBOS's checkpoint, then recovered: it pays once.

Runs examples/dbos_workflow.py (library mode) in a subprocess against the real PostgreSQL (DBOS's system
tables, in a schema of their own) and a fake OpenAI provider. The first process dies with SIGKILL right
after a step's model call returned; the second launches DBOS, which recovers the same workflow id and runs
that step again with the same `sluicegate.step_key`: the gateway replays the stored answer from its SQLite
idempotency store, which outlives the process.

This file is also the subprocess (`python -m tests.test_dbos_recovery ...`): it runs the example with a sink
that writes every gateway record to a JSON-lines file as it is emitted, so a record survives the SIGKILL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault, Handler
from tests.services import database_url

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dbos_workflow.py"
#: how each step's prompt starts in the example, to tell its provider calls and records apart
PROMPTS = {"outline": "Write a three-point outline", "draft": "Write one paragraph", "title": "Suggest a title"}


class NumberedOpenAI(FakeOpenAI):
    """Every answer is different ("answer #3"), so an identical answer can only be a replay."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", "/v1/chat/completions", NumberedOpenAI._numbered)]

    async def _numbered(self, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
        self.text = f"answer #{len(self.requests)}"
        return await self._chat(request, body, fault)


@pytest.fixture
def fake() -> Iterator[NumberedOpenAI]:
    provider = NumberedOpenAI()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def dbos_schema() -> Iterator[tuple[str, str]]:
    """DBOS's system tables in a schema of their own in the test database, dropped afterwards."""
    url = database_url()
    schema = f"sluicegate_dbos_{uuid.uuid4().hex[:10]}"
    yield url, schema
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Run:
    """One example process: its exit code, the JSON lines it printed, and the gateway records it wrote."""

    def __init__(self, process: subprocess.CompletedProcess[str], records: Path) -> None:
        self.returncode = process.returncode
        self.stderr = process.stderr
        self.lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith('{"step"')]
        self.records = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
        #: the example's last output, the finished workflow's texts (printed as indented JSON)
        start = process.stdout.rfind("\n{\n")
        self.summary = json.loads(process.stdout[start:]) if start >= 0 else None
        records.unlink(missing_ok=True)

    def step(self, name: str) -> dict[str, Any]:
        (line,) = [line for line in self.lines if line["step"] == name]
        return line

    def record(self, name: str) -> dict[str, Any]:
        (record,) = [record for record in self.records if record["step"] == name]
        return record


@pytest.fixture
def run_example(fake: NumberedOpenAI, dbos_schema: tuple[str, str], tmp_path: Path) -> Any:
    url, schema = dbos_schema
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n"
        f"  oai: {{type: openai, api_key: sk-upstream, base_url: '{fake.base_url}/v1'}}\n"
        "models:\n"
        "  - {name: smart, deployments: [{provider: oai, model: gpt-4o}], routing: {retries: 1, backoff: 0}}\n"
        # a short lease: a key held by a process that died frees itself quickly
        f"idempotency: {{backend: sqlite, url: '{tmp_path / 'idempotency.db'}', lease: 2}}\n"
        "observability: {log_prompts: true}\n"
    )
    records = tmp_path / "records.jsonl"
    workflow_id = f"article-{uuid.uuid4().hex}"

    def run(*extra: str) -> Run:
        argv = ["--config", str(config), "--model", "smart", "--workflow-id", workflow_id]
        argv += ["--database-url", url, "--schema", schema, "--verbose", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SLUICEGATE_TEST_RECORDS": str(records)}
        process = subprocess.run(
            [sys.executable, "-m", "tests.test_dbos_recovery", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=45,
        )
        return Run(process, records)

    return run


def calls(fake: NumberedOpenAI, step: str) -> int:
    return sum(1 for request in fake.requests if request.body["messages"][0]["content"].startswith(PROMPTS[step]))


def test_a_step_killed_before_its_checkpoint_replays_the_same_answer_unpaid(run_example: Any, fake: Any) -> None:
    crashed = run_example("--crash-after", "outline")
    assert crashed.returncode == -9, crashed.stderr
    assert [line["step"] for line in crashed.lines] == ["outline"]  # killed before DBOS checkpointed it

    recovered = run_example()
    assert recovered.returncode == 0, recovered.stderr
    first, replayed = crashed.step("outline"), recovered.step("outline")
    assert json.dumps(replayed["answer"]) == json.dumps(first["answer"])  # byte for byte
    assert first["answer"]["choices"][0]["message"]["content"] == "answer #1"
    assert [calls(fake, step) for step in PROMPTS] == [1, 1, 1]  # the provider answered the outline once

    paid, replay = crashed.record("outline"), recovered.record("outline")
    assert paid["cache"] is None and paid["total_tokens"] == 18 and paid["cost_usd"] > 0
    assert replay["cache"] == "idempotent-replay" and replay["total_tokens"] == 0 and replay["cost_usd"] == 0.0
    assert recovered.record("title")["cache"] is None  # the steps after the crash ran for real, once
    assert recovered.summary == {"title": "answer #3", "draft": "answer #2"}  # the workflow completed


def test_a_streamed_step_replays_as_a_stream(run_example: Any, fake: Any) -> None:
    crashed = run_example("--crash-after", "draft")
    assert crashed.returncode == -9, crashed.stderr
    recovered = run_example()
    assert recovered.returncode == 0, recovered.stderr

    first, replayed = crashed.step("draft"), recovered.step("draft")
    assert "chunks" in replayed and all(chunk["object"] == "chat.completion.chunk" for chunk in replayed["chunks"])
    assert _text(replayed["chunks"]) == _text(first["chunks"]) == "answer #2"
    assert {chunk["id"] for chunk in replayed["chunks"]} == {chunk["id"] for chunk in first["chunks"]}
    assert [calls(fake, step) for step in PROMPTS] == [1, 1, 1]
    assert recovered.record("draft")["cache"] == "idempotent-replay"
    assert recovered.record("draft")["cost_usd"] == 0.0
    # the outline was checkpointed before the crash: DBOS did not run it again at all
    assert [line["step"] for line in recovered.lines] == ["draft", "title"]


def test_a_step_that_failed_at_the_provider_is_tried_again_on_recovery(run_example: Any, fake: Any) -> None:
    fake.faults.extend([Fault(status=500), Fault(status=500)])  # the outline's call and its one retry
    crashed = run_example("--crash-after", "outline")
    assert crashed.returncode == -9, crashed.stderr
    assert "error" in crashed.step("outline") and crashed.record("outline")["status"] >= 500

    recovered = run_example()
    assert recovered.returncode == 0, recovered.stderr
    answer = recovered.step("outline")["answer"]
    assert answer["choices"][0]["message"]["content"] == "answer #3"  # a fresh call, not a stored failure
    assert calls(fake, "outline") == 3
    assert recovered.record("outline")["cache"] is None and recovered.record("outline")["cost_usd"] > 0


def test_server_mode_replays_through_the_idempotency_key_header(
    run_example: Any, fake: Any, gateway_factory: Any, tmp_path: Path
) -> None:
    gw = gateway_factory(
        {
            "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
            "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
            "idempotency": {"backend": "sqlite", "url": str(tmp_path / "server-idempotency.db")},
        }
    )
    server = ("--mode", "server", "--gateway-url", gw.url("/v1"))
    crashed = run_example(*server, "--crash-after", "title")
    assert crashed.returncode == -9, crashed.stderr
    recovered = run_example(*server)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.step("title")["answer"] == crashed.step("title")["answer"]
    assert [calls(fake, step) for step in PROMPTS] == [1, 1, 1]
    assert recovered.summary == {"title": "answer #3", "draft": "answer #2"}


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join((choice.get("delta") or {}).get("content") or "" for chunk in chunks for choice in chunk["choices"])


# --- the subprocess -------------------------------------------------------------------------------


class _RecordFile:
    """Writes each record as it is emitted (not batched): a SIGKILL a moment later must not lose it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def emit(self, record: Any) -> None:
        prompt = record.prompt[0]["content"] if record.prompt else ""
        step = next((name for name, start in PROMPTS.items() if prompt.startswith(start)), None)
        usage = record.usage.total_tokens if record.usage is not None else None
        entry = {"step": step, "status": record.status, "cache": record.cache, "cost_usd": record.cost_usd}
        with open(self.path, "a") as file:
            file.write(json.dumps({**entry, "total_tokens": usage}) + "\n")

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _main() -> None:
    spec = importlib.util.spec_from_file_location("dbos_workflow", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    records = _RecordFile(os.environ["SLUICEGATE_TEST_RECORDS"])
    example.main(sys.argv[1:], prepare=lambda gateway: gateway.recorder.add(records))


if __name__ == "__main__":
    _main()
