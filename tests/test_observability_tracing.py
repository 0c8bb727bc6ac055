"""OpenTelemetry traces: spans for the request, each upstream attempt, cache and guardrails, and the W3C
`traceparent` carried from the client to the provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


def config(fake: Any, tmp_path: Path, tracing: bool = True, **model: Any) -> dict[str, Any]:
    return {
        "database_url": f"sqlite:///{tmp_path}/keys.db",
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [
            {
                "name": "smart",
                "deployments": [{"provider": "oai", "model": "gpt-4o"}],
                "routing": {"retries": 1, "backoff": 0, "cooldown": {"failures": 0}},
                **model,
            }
        ],
        "observability": {"log_store": {"enabled": False}, "tracing": {"enabled": tracing, "exporter": "none"}},
    }


def traced(gateway_factory: Any, cfg: dict[str, Any]) -> tuple[Any, InMemorySpanExporter]:
    gw = gateway_factory(cfg)
    exporter = InMemorySpanExporter()
    gw.gateway.recorder.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    return gw, exporter


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == kind]


def chat(gw: Any, **body: Any) -> httpx.Response:
    return httpx.post(
        gw.url("/v1/chat/completions"),
        json={"model": "smart", "messages": MESSAGES, **body},
        headers={"traceparent": TRACEPARENT},
        timeout=30,
    )


def test_request_and_attempt_spans_continue_the_clients_trace(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path))
    assert chat(gw).status_code == 200
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    [attempt] = by_kind(spans, SpanKind.CLIENT)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert attempt.name == "chat gpt-4o"
    assert attempt.attributes is not None and attempt.attributes["gen_ai.usage.input_tokens"] == 11
    assert server.attributes is not None
    assert server.attributes["sluicegate.deployment"] == "oai/gpt-4o"
    assert server.attributes["http.response.status_code"] == 200
    # the provider was called with the attempt span as its parent, in the client's trace
    sent = fake_openai.requests[-1].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{format(attempt.context.span_id, '016x')}-01"


def test_each_retry_is_its_own_span_with_its_own_traceparent(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path))
    fake_openai.faults.append(Fault(status=503))
    assert chat(gw).status_code == 200
    attempts = sorted(by_kind(exporter.get_finished_spans(), SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    sent = [r.headers["traceparent"] for r in fake_openai.requests[-2:]]
    assert sent == [f"00-{TRACE_ID}-{format(a.context.span_id, '016x')}-01" for a in attempts]


def test_a_stream_keeps_its_spans_open_until_the_last_chunk(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path))
    response = chat(gw, stream=True)
    assert response.status_code == 200 and "[DONE]" in response.text
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    [attempt] = by_kind(spans, SpanKind.CLIENT)
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert server.attributes is not None and server.attributes["sluicegate.stream"] is True
    assert server.attributes["gen_ai.usage.output_tokens"] == 7
    assert (server.end_time or 0) >= (attempt.end_time or 0)


def test_failures_mark_the_request_span(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path))
    fake_openai.faults.append(Fault(status=400))
    assert chat(gw).status_code == 400
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 400


def test_guardrail_steps_get_spans_when_the_alias_has_guardrails(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    cfg = config(fake_openai, tmp_path, guardrails=["pii"])
    cfg["guardrails"] = [{"name": "pii", "type": "pii", "action": "flag", "on": ["input", "output"]}]
    gw, exporter = traced(gateway_factory, cfg)
    assert chat(gw).status_code == 200
    names = {span.name for span in exporter.get_finished_spans()}
    assert {"sluicegate.guardrails.input", "sluicegate.guardrails.output"} <= names
    [server] = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    steps = [s for s in exporter.get_finished_spans() if s.name.startswith("sluicegate.guardrails")]
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in steps)


def test_no_step_spans_for_an_alias_without_cache_or_guardrails(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path))
    assert chat(gw).status_code == 200
    assert not [s for s in exporter.get_finished_spans() if s.kind == SpanKind.INTERNAL]


@pytest.mark.parametrize("cache", [True])
def test_cache_steps_get_spans_when_the_alias_is_cached(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path, cache: bool
) -> None:
    gw, exporter = traced(gateway_factory, config(fake_openai, tmp_path, cache=cache))
    assert chat(gw).status_code == 200
    names = {span.name for span in exporter.get_finished_spans()}
    assert "sluicegate.cache.lookup" in names


def test_without_tracing_the_clients_traceparent_is_forwarded_untouched(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path, tracing=False))
    assert gw.gateway.recorder.tracing is None
    assert chat(gw).status_code == 200
    assert fake_openai.requests[-1].headers["traceparent"] == TRACEPARENT
