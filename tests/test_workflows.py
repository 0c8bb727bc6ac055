"""`sluicegate.step_key`: stable, distinct and safe idempotency keys for workflow steps, and the library's
`idempotency_key=` that sends one."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import sluicegate
from sluicegate.workflows import step_key
from tests.recording import RecordSink

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_the_same_step_gets_the_same_key_in_another_process() -> None:
    # A recovered workflow runs in a new interpreter (another hash seed): the key must not depend on it.
    code = "import sluicegate; print(sluicegate.step_key('wf-42', 'summarise', attempt_scope=3))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "7"}
    )
    assert other.stdout.strip() == step_key("wf-42", "summarise", attempt_scope=3)


def test_the_key_is_pinned() -> None:
    # Changing the derivation would orphan every stored answer of workflows in flight during an upgrade.
    assert step_key("wf-42", "summarise") == "step-" + _sha256('["sluicegate-step-key/1","wf-42","summarise",null]')


def test_the_key_is_a_valid_idempotency_key_whatever_the_input() -> None:
    for workflow_id in ("w", "x" * 10_000, "ünïcødé/工作流\n\t\x00"):
        key = step_key(workflow_id, "step")
        assert len(key) == 69 and key.isprintable() and key.isascii()
        assert workflow_id not in key  # ids may carry customer data; only a hash reaches the store and logs


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("wf", "a:b", None), ("wf:a", "b", None)),  # separators inside values cannot shift a boundary
        (("wf", "step", None), ("wf", "step", "")),
        (("wf", "step", 1), ("wf", "step", "1")),
        (("wf", "step", 1), ("wf", "step", 2)),
        (("wf-1", "step", None), ("wf-2", "step", None)),
        (("wf", "step-1", None), ("wf", "step-2", None)),
    ],
)
def test_different_steps_get_different_keys(one: tuple[Any, ...], other: tuple[Any, ...]) -> None:
    assert step_key(*one) != step_key(*other)


def test_many_steps_never_collide() -> None:
    keys = {step_key(f"wf-{w}", f"step-{s}", attempt_scope=a) for w in range(50) for s in range(20) for a in (None, 0)}
    assert len(keys) == 50 * 20 * 2


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("", "step"), ValueError),
        (("wf", ""), ValueError),
        ((None, "step"), ValueError),
        (("wf", "step", 1.5), TypeError),
        (("wf", "step", True), TypeError),
    ],
)
def test_bad_arguments_are_refused(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        step_key(*args)


@pytest.fixture
def configured(fake_openai: Any) -> Any:
    gateway = sluicegate.configure(
        {
            "providers": {"oai": {"type": "openai", "api_key": "sk-up", "base_url": fake_openai.base_url + "/v1"}},
            "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
            "idempotency": {"backend": "memory"},
        }
    )
    yield gateway
    sluicegate.configure({"providers": {"demo": {"type": "demo"}}})


def test_the_library_sends_the_key_and_a_repeat_replays_unpaid(configured: Any, fake_openai: Any) -> None:
    sink = RecordSink()
    configured.recorder.add(sink)
    key = step_key("wf-lib", "greet")
    first = _call(key)
    repeat = _call(key)
    streamed = list(_call(key, stream=True))
    assert repeat == first and len(fake_openai.requests) == 1
    assert _text(streamed) == first["choices"][0]["message"]["content"] == "Hello from fake OpenAI."
    assert [record.cache for record in sink.records] == [None, "idempotent-replay", "idempotent-replay"]
    assert [record.cost_usd for record in sink.records][1:] == [0.0, 0.0]
    _call(step_key("wf-lib", "greet", attempt_scope="retry-2"))  # another scope: a real call
    assert len(fake_openai.requests) == 2


def _call(key: str, **params: Any) -> Any:
    return sluicegate.completion("smart", MESSAGES, idempotency_key=key, **params)


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
