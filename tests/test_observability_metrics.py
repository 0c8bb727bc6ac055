"""GET /metrics through HTTP: what a Prometheus scrape sees after real requests against the fake upstreams."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.config import config_from_dict
from sluicegate.context import AttemptRecord, RequestRecord
from sluicegate.observability.metrics import OTHER, BoundedLabel, MetricsSink
from sluicegate.providers.base import Usage
from tests.fakes.server import Fault

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"},
            "backup": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"},
        },
        "models": [
            {
                "name": "smart",
                "deployments": [{"provider": "oai", "model": "gpt-4o"}, {"provider": "backup", "model": "gpt-4o-mini"}],
                "routing": {"retries": 1, "backoff": 0, "cooldown": {"failures": 0}},
            }
        ],
        **extra,
    }


def scrape(gw: Any, **kwargs: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(gw.url("/metrics"), **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any) -> Any:
    return gateway_factory(config(fake_openai))


def test_requests_latency_and_tokens_are_counted_per_alias_and_provider(gw: Any) -> None:
    client = gw.openai()
    for _ in range(3):
        client.chat.completions.create(model="smart", messages=MESSAGES)
    samples = scrape(gw)
    assert value(samples, "sluicegate_requests_total", alias="smart", provider="oai", status="200") == 3
    assert value(samples, "sluicegate_request_duration_seconds_count", alias="smart", provider="oai") == 3
    # the fake answers every request with 11 prompt and 7 completion tokens
    assert value(samples, "sluicegate_tokens_total", alias="smart", provider="oai", direction="input") == 33
    assert value(samples, "sluicegate_tokens_total", alias="smart", provider="oai", direction="output") == 21
    assert value(samples, "sluicegate_upstream_attempts_total", deployment="oai/gpt-4o", status="200") == 3
    assert value(samples, "sluicegate_upstream_attempt_duration_seconds_count", deployment="oai/gpt-4o") == 3


def test_streams_observe_time_to_first_token(gw: Any) -> None:
    stream = gw.openai().chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    samples = scrape(gw)
    assert value(samples, "sluicegate_time_to_first_token_seconds_count", alias="smart", provider="oai") == 1
    assert value(samples, "sluicegate_requests_total", alias="smart", provider="oai", status="200") == 1


def test_retries_fallbacks_and_errors(gw: Any, fake_openai: Any) -> None:
    # oai fails twice (first try and its one retry), backup answers: one retry, one fallback
    fake_openai.faults.extend([Fault(status=500), Fault(status=500)])
    gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    samples = scrape(gw)
    assert value(samples, "sluicegate_retries_total", alias="smart", deployment="oai/gpt-4o") == 1
    assert value(samples, "sluicegate_fallbacks_total", alias="smart", deployment="backup/gpt-4o-mini") == 1
    assert value(samples, "sluicegate_upstream_attempts_total", deployment="oai/gpt-4o", status="500") == 2
    assert value(samples, "sluicegate_requests_total", alias="smart", provider="backup", status="200") == 1

    fake_openai.faults.extend([Fault(status=400)])
    with pytest.raises(openai.BadRequestError):
        gw.openai().chat.completions.create(model="smart", messages=MESSAGES)
    samples = scrape(gw)
    errors = [k for k in samples if k[0] == "sluicegate_request_errors_total"]
    assert errors and all(dict(k[1])["alias"] == "smart" for k in errors)
    assert value(samples, "sluicegate_requests_total", alias="smart", provider="none", status="400") == 1


def test_label_values_stay_bounded_for_names_clients_make_up(gw: Any) -> None:
    client = gw.openai()
    for name in ("nope-1", "nope-2", "oai/gpt-4o-2099"):
        with contextlib.suppress(openai.APIStatusError):
            client.chat.completions.create(model=name, messages=MESSAGES)
    samples = scrape(gw)
    aliases = {dict(labels).get("alias") for name, labels in samples if name == "sluicegate_requests_total"}
    assert aliases <= {"smart", OTHER}
    assert "nope-1" not in str(samples)


def test_circuit_state_gauge_lists_every_deployment(gw: Any) -> None:
    samples = scrape(gw)
    assert value(samples, "sluicegate_circuit_state", deployment="oai/gpt-4o") == 0
    assert ("sluicegate_circuit_state", frozenset({("deployment", "backup/gpt-4o-mini")})) in samples


def test_metrics_can_require_the_master_key(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, master_key="sk-master", observability={"metrics": {"require_key": True}}))
    assert httpx.get(gw.url("/metrics")).status_code == 401
    assert httpx.get(gw.url("/metrics"), headers={"authorization": "Bearer wrong"}).status_code == 401
    scrape(gw, headers={"authorization": "Bearer sk-master"})


def test_metrics_off_means_no_route(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(config(fake_openai, observability={"metrics": {"enabled": False}}))
    assert httpx.get(gw.url("/metrics")).status_code == 404


def test_key_labels_are_capped() -> None:
    label = BoundedLabel(limit=2)
    assert [label(v) for v in ("k1", "k2", "k3", "k1", None)] == ["k1", "k2", OTHER, "k1", "none"]


def test_per_key_series_keep_at_most_max_keys() -> None:
    cfg = config_from_dict(
        {
            "providers": {"oai": {"type": "openai", "api_key": "x"}},
            "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "m"}]}],
        }
    )
    from sluicegate.observability.config import MetricsConfig

    sink = MetricsSink(cfg, MetricsConfig(per_key=True, max_keys=3))
    for i in range(10):
        sink.emit(
            RequestRecord(
                request_id=str(i),
                alias="smart",
                key_id=f"key-{i}",
                provider="oai",
                usage=Usage(5, 1, 6),
                cost_usd=0.5,
                attempts=[AttemptRecord("oai/m", 200)],
            )
        )
    text = sink.render().decode()
    keys = {
        s.labels["key"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if f.name == "sluicegate_key_requests"
    }
    assert keys == {"key-0", "key-1", "key-2", OTHER}
    assert 'sluicegate_key_cost_usd_total{key="other"} 3.5' in text
