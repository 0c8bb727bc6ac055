"""Semantic-cache lookup latency with 100k cached entries, embedding included, on one core.

    .venv/bin/python bench/bench_semantic.py              100k entries, 300 timed lookups
    .venv/bin/python bench/bench_semantic.py --entries 20000 --lookups 100

Every timed call is the gateway's own `ResponseCache.lookup` on a request it has not seen: exact-key
miss, MiniLM embedding of the last user turn, vector search, near-miss guard, fetch of the cached answer.
The 100k entries all sit in one context (the same alias, system prompt and parameters): the worst case,
since a search only ever looks within one context.

Filling 100k entries with real embeddings would take the benchmark half an hour, so the index holds the
real embeddings of the labelled set's anchors (which the timed paraphrases should find) plus 100k vectors
made from 400 real prompt embeddings with noise (each ~0.8 cosine from its origin), which gives the index
the clustered shape of real traffic. The run also checks that every paraphrase found at 100k entries is
the one an exhaustive scan finds (the cells lose no hits). Pinned to core 0, BLAS on one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sluicegate.cache.embedder import shared_minilm  # noqa: E402
from sluicegate.cache.guard import signature  # noqa: E402
from sluicegate.cache.keys import context_key  # noqa: E402
from sluicegate.cache.semantic import Prompt  # noqa: E402
from sluicegate.cache.service import ResponseCache  # noqa: E402
from sluicegate.config import config_from_dict  # noqa: E402
from sluicegate.context import RequestContext  # noqa: E402

SYSTEM = "You are a helpful assistant."
TOPICS = ["python", "billing", "travel", "cooking", "health", "history", "math", "weather", "sql", "networking"]
VERBS = ["How do I", "What is the best way to", "Can you explain how to", "Why can't I", "Is it possible to"]
TASKS = [
    "reset my password",
    "export a report",
    "read a large file",
    "book a flight",
    "cancel an order",
    "compute an average",
    "join two tables",
    "boil rice",
    "lower my blood pressure",
    "configure a firewall",
]


def _request(text: str) -> dict[str, Any]:
    return {"model": "smart", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]}


def _labelled() -> list[tuple[str, str]]:
    pairs = []
    for line in (ROOT / "tests" / "data" / "semantic_pairs.jsonl").read_text().splitlines():
        item = json.loads(line)
        pairs += [(item["anchor"], text) for text in item["hit"]]
    return pairs


async def run(entries: int, lookups: int) -> dict[str, Any]:
    config = config_from_dict(
        {
            "providers": {"d": {"type": "demo"}},
            "models": [{"name": "smart", "deployments": [{"provider": "d", "model": "x"}], "cache": True}],
            "cache": {
                "max_bytes": 1 << 30,
                "semantic": {"enabled": True, "max_entries": entries + 1000},
            },
            "idempotency": {"enabled": False},
        }
    )
    cache = ResponseCache(config)
    await cache.start()
    assert cache.semantic is not None and cache.backend is not None
    model = shared_minilm()
    partition = context_key(_request("x"), "sluicegate", "full")

    started = time.perf_counter()
    origins = [f"{verb} {task} in {topic}?" for verb in VERBS for task in TASKS for topic in TOPICS[:8]]
    origin_vectors = model.embed_many(origins)
    rng = np.random.default_rng(7)
    answer = json.dumps(
        {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
    ).encode()
    filler_signature = signature("filler")
    for start in range(0, entries, 10_000):
        count = min(10_000, entries - start)
        base = origin_vectors[rng.integers(0, len(origin_vectors), count)]
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = base * 0.8 + noise * 0.6
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for offset, vector in enumerate(vectors):
            key = f"sluicegate:filler:{start + offset}"
            cache.semantic.add(Prompt(partition, "filler", vector, filler_signature), key, 3600)
            await cache.backend.set(key, answer, 3600)
    pairs = _labelled()
    anchors = sorted({anchor for anchor, _ in pairs})
    for text, vector in zip(anchors, model.embed_many(anchors), strict=True):
        key = f"sluicegate:anchor:{text}"
        cache.semantic.add(Prompt(partition, text, vector, signature(text)), key, 3600)
        await cache.backend.set(key, answer, 3600)
    fill_seconds = time.perf_counter() - started

    queries = [query for _, query in pairs]
    queries = (queries * (lookups // len(queries) + 1))[:lookups]
    # Make each timed request new to the exact cache (a different trailing space is the same prompt).
    timings, hits = [], 0
    for number, query in enumerate(queries):
        ctx = RequestContext(authenticated=True)
        ctx.begin("chat", "smart", stream=False)
        request = _request(query + " " * (number // len(pairs)))
        began = time.perf_counter()
        found = await cache.lookup(request, ctx)
        timings.append((time.perf_counter() - began) * 1000)
        hits += found is not None
    embed_times = []
    for query in queries[:100]:
        began = time.perf_counter()
        model.embed_one(query)
        embed_times.append((time.perf_counter() - began) * 1000)
    search_times = []
    for query in queries[:100]:
        vector = model.embed_one(query)
        began = time.perf_counter()
        cache.semantic.index.search(partition, vector)
        search_times.append((time.perf_counter() - began) * 1000)

    # The cells must not lose hits: compare with an exhaustive scan of the same vectors.
    exhaustive_hits = 0
    everything = np.stack([cache.semantic.index.vector(e) for e in cache.semantic.index._entries.values()])
    payloads = [e.payload for e in cache.semantic.index._entries.values()]
    for anchor, query in pairs:
        vector = model.embed_one(query)
        best = int(np.argmax(everything @ vector))
        exhaustive_hits += payloads[best].key == f"sluicegate:anchor:{anchor}"
    indexed_hits = 0
    for anchor, query in pairs:
        found = cache.semantic.index.search(partition, model.embed_one(query), k=1)
        indexed_hits += bool(found) and found[0][1].payload.key == f"sluicegate:anchor:{anchor}"
    await cache.aclose()

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
        }

    return {
        "entries": len(cache.semantic.index),
        "cells": sum(len(p.cells) for p in cache.semantic.index._partitions.values()),
        "fill_seconds": round(fill_seconds, 1),
        "lookup": summary(timings),
        "embedding": summary(embed_times),
        "search": summary(search_times),
        "semantic_hits": f"{hits}/{len(queries)}",
        "nearest_is_anchor_exhaustive": f"{exhaustive_hits}/{len(pairs)}",
        "nearest_is_anchor_indexed": f"{indexed_hits}/{len(pairs)}",
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--core", type=int, default=0, help="CPU to pin to")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    result = asyncio.run(run(args.entries, args.lookups))
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "semantic.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
