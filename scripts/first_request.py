"""Wait for the gateway to be ready, then send it one chat request and print the answer."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request


def wait_ready(base: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health/readiness", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the gateway at {base} did not become ready in {seconds:g}s")


def first_request(base: str) -> dict[str, object]:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "Hello, gateway!"}]}).encode()
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("SLUICEGATE_MASTER_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base + "/v1/chat/completions", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, object] = json.load(response)
        return answer


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4000"
    wait_ready(base)
    answer = first_request(base)
    choices = answer["choices"]
    assert isinstance(choices, list)
    print("First request -> model 'demo':", choices[0]["message"]["content"])
