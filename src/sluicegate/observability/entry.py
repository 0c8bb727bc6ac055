"""The one JSON shape of a finished request, shared by the request log, the log store and the callbacks.

Built from a `RequestRecord` off the hot path. It never contains keys (only the key's id) and contains the
prompt only when `observability.log_prompts` is on.
"""

from __future__ import annotations

import time
from typing import Any

from sluicegate.context import RequestRecord


def usage_fields(record: RequestRecord) -> dict[str, int]:
    usage = record.usage
    if usage is None:
        return {}
    fields = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens:
        fields["cached_tokens"] = usage.cached_tokens
    if usage.cache_creation_tokens:
        fields["cache_creation_tokens"] = usage.cache_creation_tokens
    if usage.reasoning_tokens:
        fields["reasoning_tokens"] = usage.reasoning_tokens
    return fields


def attempts_list(record: RequestRecord) -> list[dict[str, Any]]:
    return [
        {"deployment": a.deployment, "status": a.status, "error": a.error, "latency_ms": _round(a.latency_ms)}
        for a in record.attempts
    ]


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, the form log pipelines and Langfuse parse."""
    seconds = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((epoch - seconds) * 1000):03d}Z"


def request_entry(record: RequestRecord, *, include_prompt: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "request_id": record.request_id,
        "timestamp": iso_time(record.started_at),
        "endpoint": record.endpoint,
        "alias": record.alias,
        "stream": record.stream,
        "key_id": record.key_id,
        "team": record.team,
        "deployment": record.deployment,
        "provider": record.provider,
        "attempts": attempts_list(record),
        "status": record.status,
        "error_code": record.error_code,
        "usage": usage_fields(record),
        "usage_estimated": record.usage_estimated,
        "cost_usd": record.cost_usd,
        "cache": record.cache,
        "guardrails": dict(record.guardrails),
        "latency_ms": _round(record.latency_ms),
        "ttft_ms": _round(record.ttft_ms),
        "cancelled": record.cancelled,
    }
    if include_prompt and record.prompt is not None:
        entry["prompt"] = record.prompt
    return entry


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
