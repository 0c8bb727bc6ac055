"""Overhead of the default guardrail set on a 1 KB prompt and a 1 KB answer, p50 on one core.

    .venv/bin/python bench/bench_guardrails.py [--iterations 5000]

Calls the pipeline's hooks exactly as the gateway does (check_input before the provider, check_output and
restore_output after it) and reports the time they add per request. The process is pinned to one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import msgspec

from sluicegate.config import config_from_dict
from sluicegate.context import RequestContext
from sluicegate.guardrails.pipeline import GuardrailPipeline
from sluicegate.providers.base import ChatResult, Usage

#: the set docs/guardrails.md recommends leaving on
DEFAULT_SET = [
    {"name": "no-pii", "type": "pii", "on": ["input", "output"], "action": "redact", "restore": True},
    {"name": "no-secrets", "type": "secrets", "on": ["input", "output"], "action": "block"},
    {"name": "injection", "type": "prompt_injection", "on": ["input"], "action": "flag"},
]

PARAGRAPH = (
    "Our quarterly planning meeting covered the migration of the billing service to the new cluster, the "
    "hiring plan for the platform team and the budget for the observability rollout. The team agreed to "
    "finish the database upgrade before the end of the month, to review the incident runbooks, and to move "
    "the weekly sync to Thursdays. Please summarise the decisions, list the owners for each action item and "
    "flag anything that looks risky for the release on the 14th. "
)


def prompt_1kb(with_pii: bool) -> str:
    text = (PARAGRAPH * 3)[:1000]
    if with_pii:
        text = text[:900] + " Contact: ana.lopez@example.com, +1 415 555 2671."
    return text[:1024]


def make_pipeline() -> GuardrailPipeline:
    config = config_from_dict(
        {
            "providers": {"p": {"type": "openai", "api_key": "k", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {
                    "name": "smart",
                    "deployments": [{"provider": "p", "model": "m"}],
                    "guardrails": ["no-pii", "no-secrets", "injection"],
                }
            ],
            "guardrails": DEFAULT_SET,
        }
    )
    return GuardrailPipeline(config)


def answer(text: str) -> ChatResult:
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 250, "completion_tokens": 250, "total_tokens": 500},
    }
    return ChatResult(msgspec.json.encode(body), Usage(250, 250, 500))


async def measure(pipeline: GuardrailPipeline, prompt: str, iterations: int) -> dict[str, list[float]]:
    request: dict[str, Any] = {
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt},
        ],
    }
    reply = answer(PARAGRAPH * 2 + PARAGRAPH[:200])
    samples: dict[str, list[float]] = {"input": [], "output": [], "total": []}
    for index in range(iterations + 200):
        ctx = RequestContext(request_id=str(index))
        ctx.begin("chat", "smart", stream=False)
        started = time.perf_counter()
        sent = await pipeline.check_input(request, ctx)
        middle = time.perf_counter()
        result = await pipeline.check_output(sent, reply, ctx)
        pipeline.restore_output(result, ctx)
        ended = time.perf_counter()
        if index >= 200:  # warm-up
            samples["input"].append((middle - started) * 1e6)
            samples["output"].append((ended - middle) * 1e6)
            samples["total"].append((ended - started) * 1e6)
    return samples


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pipeline = make_pipeline()
    print(f"default guardrail set: {', '.join(g['name'] for g in DEFAULT_SET)}; {args.iterations} requests, one core")
    print("| prompt (1 KB) | stage | p50 µs | p90 µs | p99 µs | mean µs |")
    print("|---|---|---|---|---|---|")
    for label, with_pii in (("clean", False), ("with an email and a phone (redacted)", True)):
        samples = asyncio.run(measure(pipeline, prompt_1kb(with_pii), args.iterations))
        for stage, values in samples.items():
            print(
                f"| {label} | {stage} | {percentile(values, 0.5):.0f} | {percentile(values, 0.9):.0f} | "
                f"{percentile(values, 0.99):.0f} | {statistics.fmean(values):.0f} |"
            )


if __name__ == "__main__":
    main()
