"""The load: wrk for non-streaming requests (a generated Lua script, parsed `--latency` output), and
bench/stream_client.py for time to first byte and concurrent SSE streams. Both run pinned to the load core.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from processes import Processes, pinned

BENCH_DIR = Path(__file__).resolve().parent
CHAT_PATH = "/v1/chat/completions"
WRK_GRACE_S = 30.0

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class WrkResult:
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def chat_body(model: str, stream: bool = False) -> bytes:
    document: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    if stream:
        document |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(document, separators=(",", ":")).encode()


def write_wrk_script(path: Path, model: str, api_key: str | None) -> Path:
    # A Lua long bracket holds the JSON verbatim, no escaping needed.
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = [==[{chat_body(model).decode()}]==]",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if api_key:
        lines.append(f'wrk.headers["Authorization"] = [==[Bearer {api_key}]==]')
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_wrk(output: str, connections: int) -> WrkResult:
    percentiles = {int(match[1]): float(match[2]) * _UNIT_MS[match[3]] for match in _PERCENTILE.finditer(output)}
    total = _REQUESTS.search(output)
    rate = _RATE.search(output)
    if total is None or rate is None or len(percentiles) < 4:
        raise RuntimeError(f"could not parse wrk output:\n{output[-2000:]}")
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET_ERRORS.search(output)
    return WrkResult(
        connections=connections,
        requests=int(total[1]),
        seconds=round(float(total[2]) * _UNIT_MS[total[3]] / 1000.0, 3),
        rps=float(rate[1]),
        p50_ms=round(percentiles[50], 3),
        p75_ms=round(percentiles[75], 3),
        p90_ms=round(percentiles[90], 3),
        p99_ms=round(percentiles[99], 3),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(count) for count in sockets.groups()) if sockets else 0,
    )


def run_wrk(
    processes: Processes, *, port: int, script: Path, connections: int, seconds: float, core: int | None
) -> WrkResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{CHAT_PATH}",
    ]
    output = processes.run(f"wrk-c{connections}", pinned(command, core), timeout=seconds + WRK_GRACE_S)
    return parse_wrk(output, connections)


def run_stream_client(
    processes: Processes,
    *,
    python: str,
    mode: str,
    port: int,
    options: Mapping[str, object],
    timeout: float,
    core: int | None,
) -> dict[str, object]:
    """Run bench/stream_client.py in its own process and return the JSON it prints."""
    command = [python, str(BENCH_DIR / "stream_client.py"), mode, "--port", str(port), "--timeout", str(timeout)]
    for name, value in options.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    output = processes.run(f"stream-{mode}", pinned(command, core), timeout=timeout + WRK_GRACE_S)
    last_line = output.strip().splitlines()[-1] if output.strip() else ""
    try:
        result: dict[str, object] = json.loads(last_line)
    except json.JSONDecodeError:
        raise RuntimeError(f"stream client failed:\n{output[-2000:]}") from None
    return result
