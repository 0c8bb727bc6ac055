"""What recording a finished request costs on the hot path: `Recorder.emit` per observability set-up.

    .venv/bin/python bench/bench_recorder.py

Every sink's `emit` runs in the request's task, so this is added to every request's CPU time. Database,
log and network sinks only append to their queue here; their writing happens in the background.
"""

from __future__ import annotations

import sys
import tempfile
import timeit
from typing import Any

from sluicegate.config import config_from_dict
from sluicegate.context import AttemptRecord, RequestRecord
from sluicegate.observability.recorder import Recorder
from sluicegate.providers.base import Usage

BASE = {
    "providers": {"oai": {"type": "openai", "api_key": "x"}},
    "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
}


def setups(folder: str) -> dict[str, dict[str, Any]]:
    return {
        "nothing (metrics off)": {"metrics": {"enabled": False}},
        "metrics (the default)": {},
        "metrics, per-key series": {"metrics": {"per_key": True}},
        "metrics + log store + JSON log + webhook": {
            "log_requests": True,
            "log_store": {"database_url": f"sqlite:///{folder}/unused.db"},
            "callbacks": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        },
    }


def record() -> RequestRecord:
    return RequestRecord(
        request_id="0123456789abcdef",
        alias="smart",
        key_id="key_1",
        provider="oai",
        deployment="oai/gpt-4o",
        usage=Usage(11, 7, 18),
        cost_usd=0.0001,
        latency_ms=12.0,
        ttft_ms=5.0,
        attempts=[AttemptRecord("oai/gpt-4o", 200)],
    )


def main() -> int:
    number = 200_000
    item = record()
    print("| recorder set-up | us per request |\n|---|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, observability in setups(folder).items():
            recorder = Recorder(config_from_dict({**BASE, "observability": observability}))
            # Queues are bounded: once full, emit is the steady-state append-and-drop path, as when the
            # writer is behind; measure that path, which is never cheaper than a queue with room.
            best = min(timeit.repeat(lambda r=recorder: r.emit(item), number=number, repeat=5)) / number
            print(f"| {name} | {best * 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
