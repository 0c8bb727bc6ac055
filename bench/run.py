"""Sluicegate benchmark: direct-to-upstream vs through a bare pass-through proxy vs through the gateway.

    python bench/run.py                     everything but the soak (~3 min)
    python bench/run.py --quick             3 s per wrk point
    python bench/run.py --target gateway    direct (always, it is the baseline) + the gateway
    python bench/run.py --parts ttfb,sse    only some parts
    python bench/run.py --soak              adds RSS after 100k and 1M requests
    python bench/run.py --config my.yaml    bench a gateway config template ({upstream} = the fake's base URL)

Pinning: the server under test on --server-core (0), wrk, the stream client and the fake upstream on
--load-core (1). Prints Markdown tables; writes bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import report
from loadgen import CHAT_PATH, chat_body, run_stream_client, run_wrk, write_wrk_script
from processes import (
    Child,
    Processes,
    StartupError,
    cpu_sample,
    foreign_cores,
    http_request,
    memory_mb,
    pinned,
    wait_http_ready,
    wait_log_line,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
RESULTS = BENCH_DIR / "results" / "latest.json"
PARTS = ("throughput", "ttfb", "sse", "memory", "import", "soak")
DEFAULT_PARTS = ("throughput", "ttfb", "sse", "memory", "import")
TARGETS = ("direct", "passthrough", "gateway")
DEFAULT_CONFIG = """\
providers:
  up: {type: openai, base_url: {upstream}, api_key: bench-key}
models:
  - name: bench
    deployments:
      - {provider: up, model: bench-model}
"""
#: the stream shape outside the SSE part: 5 chunks, unpaced (what the TTFB part measures)
FAST_STREAM = (5, 0.0)
MAX_SOAK_SEGMENTS = 500
#: cores other processes may keep busy before the numbers are flagged as noisy
QUIET_CORES = 0.1


class TargetError(RuntimeError):
    """A target could not be benched (did not start, or answered the sanity requests wrongly)."""


@dataclass
class Settings:
    targets: list[str]
    parts: list[str]
    duration: float
    warmup: float
    connections: list[int]
    ttfb_samples: int
    sse_streams: int
    sse_ramp: float
    sse_chunks: int
    sse_pace_ms: float
    soak_checkpoints: list[int]
    soak_timeout: float
    model: str
    api_key: str | None
    config_template: str
    server: str | None
    python: str
    server_core: int | None
    load_core: int | None
    startup_timeout: float
    wait_quiet: float
    output: Path
    strict: bool
    notes: list[str] = field(default_factory=list)


# --- the run -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, processes: Processes, workdir: Path) -> None:
        self.s = settings
        self.processes = processes
        self.workdir = workdir
        self.upstream_port = 0
        self.wrk_script = write_wrk_script(workdir / "post.lua", settings.model, settings.api_key)

    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {"meta": self._meta(), "targets": {}}
        results["meta"]["foreign_cpu_cores_before"] = wait_until_quiet(self.s.wait_quiet)
        if "import" in self.s.parts:
            results["import"] = measure_import(self.s.python)
        self.upstream_port = self._start_upstream()
        for name in self.s.targets:
            print(f"== {name}", file=sys.stderr, flush=True)
            before = cpu_sample()
            try:
                results["targets"][name] = self._bench_target(name)
            except (TargetError, StartupError, RuntimeError) as exc:
                print(f"   {name} skipped: {exc}", file=sys.stderr, flush=True)
                results["targets"][name] = {"error": str(exc)}
            foreign = foreign_cores(before, cpu_sample())
            results["targets"][name]["foreign_cpu_cores"] = foreign
            if foreign > QUIET_CORES:
                print(f"   warning: other processes kept {foreign} cores busy meanwhile", file=sys.stderr)
        results["overhead"], results["checks"] = report.evaluate(results)
        return results

    def _meta(self) -> dict[str, Any]:
        return {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "server_core": self.s.server_core,
            "load_core": self.s.load_core,
            "server": self.s.server,
            "settings": {
                key: value for key, value in asdict(self.s).items() if key not in ("config_template", "output")
            },
            "config_template": self.s.config_template,
            "notes": self.s.notes,
        }

    # --- processes --------------------------------------------------------------------------

    def _start_upstream(self) -> int:
        command = [self.s.python, str(BENCH_DIR / "fake_upstream.py"), "--port", "0"]
        child = self.processes.start("fake-upstream", pinned(command, self.s.load_core))
        port = int(wait_log_line(child, "READY ", self.s.startup_timeout))
        wait_http_ready(child, port, "/health", self.s.startup_timeout)
        return port

    def _set_stream_profile(self, chunks: int, pace_ms: float) -> None:
        body = json.dumps({"chunks": chunks, "pace_ms": pace_ms}).encode()
        status, answer = http_request(self.upstream_port, "POST", "/_bench/profile", body)
        if status != 200:
            raise RuntimeError(f"the fake upstream refused the stream profile: {answer[:200]!r}")

    def _start_server(self, name: str) -> tuple[int, Child]:
        port = free_port()
        upstream = f"http://127.0.0.1:{self.upstream_port}/v1"
        if name == "passthrough":
            command = [self.s.python, str(BENCH_DIR / "passthrough_proxy.py"), "--upstream", upstream]
            command += ["--port", str(port)]
        else:
            config = self.workdir / "gateway.yaml"
            config.write_text(render_config(self.s.config_template, self.upstream_port))
            command = [self.s.python, "-m", "sluicegate", "serve", "--config", str(config)]
            command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            if self.s.server:
                command += ["--server", self.s.server]
        child = self.processes.start(name, pinned(command, self.s.server_core), env=child_env())
        took = wait_http_ready(child, port, "/health/readiness", self.s.startup_timeout)
        print(f"   ready in {took:.2f}s on port {port} (pid {child.pid})", file=sys.stderr, flush=True)
        return port, child

    # --- one target -------------------------------------------------------------------------

    def _bench_target(self, name: str) -> dict[str, Any]:
        if name == "direct":
            return self._measure(self.upstream_port, None)
        port, child = self._start_server(name)
        try:
            return self._measure(port, child)
        finally:
            self.processes.stop(child)

    def _measure(self, port: int, child: Child | None) -> dict[str, Any]:
        result: dict[str, Any] = {"port": port}
        if child is not None:
            time.sleep(0.5)
            result["memory"] = {"idle": memory_mb(child.pid)}
        self._set_stream_profile(*FAST_STREAM)
        sanity_check(port, self.s.model)
        if "throughput" in self.s.parts:
            result["throughput"] = self._throughput(port)
        if "ttfb" in self.s.parts:
            result["ttfb"] = self._stream_client("ttfb", port, {"samples": self.s.ttfb_samples}, 120.0)
        if "sse" in self.s.parts:
            result["sse"] = self._sse(port)
        if child is not None:
            result["memory"]["after_load"] = memory_mb(child.pid)
            if "soak" in self.s.parts:
                result["soak"] = self._soak(port, child, result.get("throughput", []))
        return result

    def _wrk(self, port: int, connections: int, seconds: float) -> dict[str, Any]:
        outcome = run_wrk(
            self.processes,
            port=port,
            script=self.wrk_script,
            connections=connections,
            seconds=seconds,
            core=self.s.load_core,
        )
        return asdict(outcome)

    def _throughput(self, port: int) -> list[dict[str, Any]]:
        if self.s.warmup > 0:
            self._wrk(port, max(self.s.connections), self.s.warmup)
        points = []
        for connections in self.s.connections:
            point = self._wrk(port, connections, self.s.duration)
            print(
                f"   c={connections:<3} {point['rps']:>9.0f} req/s  p50 {point['p50_ms']:.3f} ms"
                f"  p99 {point['p99_ms']:.3f} ms  errors {point['non_2xx'] + point['socket_errors']}",
                file=sys.stderr,
                flush=True,
            )
            points.append(point)
        return points

    def _stream_client(self, mode: str, port: int, options: Mapping[str, object], timeout: float) -> dict[str, Any]:
        options = {"model": self.s.model, "api_key": self.s.api_key, **options}
        outcome = run_stream_client(
            self.processes,
            python=self.s.python,
            mode=mode,
            port=port,
            options=options,
            timeout=timeout,
            core=self.s.load_core,
        )
        print(f"   {mode}: {json.dumps(outcome)}", file=sys.stderr, flush=True)
        return outcome

    def _sse(self, port: int) -> dict[str, Any]:
        self._set_stream_profile(self.s.sse_chunks, self.s.sse_pace_ms)
        try:
            options = {"streams": self.s.sse_streams, "ramp": self.s.sse_ramp, "min_events": self.s.sse_chunks}
            stream_seconds = self.s.sse_chunks * self.s.sse_pace_ms / 1000.0
            return self._stream_client("sse", port, options, timeout=60.0 + 4 * stream_seconds)
        finally:
            self._set_stream_profile(*FAST_STREAM)

    def _soak(self, port: int, child: Child, throughput: list[dict[str, Any]]) -> dict[str, Any]:
        connections = 64
        rate = max((point["rps"] for point in throughput if point["connections"] == connections), default=2000.0)
        deadline = time.monotonic() + self.s.soak_timeout
        done, errors, samples, checkpoints = 0, 0, [], list(self.s.soak_checkpoints)
        for _ in range(MAX_SOAK_SEGMENTS):
            if not checkpoints or time.monotonic() >= deadline:
                break
            seconds = min(60.0, max(1.0, (checkpoints[0] - done) / max(rate, 1.0)))
            point = self._wrk(port, connections, seconds)
            done += point["requests"]
            errors += point["non_2xx"] + point["socket_errors"]
            rate = point["rps"] or rate
            sample = {"requests": done, **memory_mb(child.pid)}
            samples.append(sample)
            print(f"   soak {done:>9} requests, rss {sample['rss_mb']} MB", file=sys.stderr, flush=True)
            while checkpoints and done >= checkpoints[0] * 0.995:
                checkpoints.pop(0)
        return report.soak_summary(samples, self.s.soak_checkpoints, errors, timed_out=bool(checkpoints))


# --- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render_config(template: str, upstream_port: int) -> str:
    # Plain replacement, not str.format: YAML flow mappings are full of braces.
    return template.replace("{upstream}", f"http://127.0.0.1:{upstream_port}/v1").replace(
        "{upstream_port}", str(upstream_port)
    )


def child_env() -> dict[str, str]:
    """The working tree's package first, so the bench measures src/ even when an older copy is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def sanity_check(port: int, model: str) -> None:
    status, body = http_request(port, "POST", CHAT_PATH, chat_body(model))
    if status != 200 or b'"choices"' not in body:
        raise TargetError(f"POST {CHAT_PATH} answered {status}: {body[:300]!r}")
    status, body = http_request(port, "POST", CHAT_PATH, chat_body(model, stream=True))
    if status != 200 or b"data: [DONE]" not in body:
        raise TargetError(f"streaming POST {CHAT_PATH} answered {status}: {body[:300]!r}")


def measure_import(python: str, repeats: int = 5) -> dict[str, Any]:
    """Best of `repeats`: the import alone (timed inside the interpreter), and the whole `python -c` process."""
    code = "import time; t = time.perf_counter(); import sluicegate; print(time.perf_counter() - t)"
    inner, whole = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60, check=False
        )
        whole.append(time.perf_counter() - began)
        if done.returncode != 0:
            return {"error": done.stderr.strip()[-500:]}
        inner.append(float(done.stdout.strip()))
    bare = min(_timed_run([python, "-c", "pass"]) for _ in range(repeats))
    return {
        "import_ms": round(min(inner) * 1000, 1),
        "process_ms": round(min(whole) * 1000, 1),
        "bare_interpreter_ms": round(bare * 1000, 1),
        "slowest_modules": slowest_imports(python),
    }


def _timed_run(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, timeout=60, check=False)
    return time.perf_counter() - began


def slowest_imports(python: str, count: int = 8) -> list[dict[str, Any]]:
    """The modules with the largest self time in `python -X importtime -c 'import sluicegate'`."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", "import sluicegate"],
        check=False,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    rows: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append(
                {"module": parts[2].strip(), "self_ms": int(parts[0]) / 1000, "cumulative_ms": int(parts[1]) / 1000}
            )
    return sorted(rows, key=lambda row: row["self_ms"], reverse=True)[:count]


def gateway_available(python: str) -> str | None:
    """None when `python -m sluicegate serve --help` works, else why not."""
    try:
        done = subprocess.run(
            [python, "-m", "sluicegate", "serve", "--help"],
            check=False,
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`sluicegate serve --help` did not finish within 30s"
    return None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip())[-500:]


# --- process-wide setup ------------------------------------------------------------------------


def wait_until_quiet(patience: float) -> float:
    """Sample the CPU other processes use, for up to `patience` seconds until it is below QUIET_CORES."""
    deadline = time.monotonic() + patience
    while True:
        before = cpu_sample()
        time.sleep(1.0)
        foreign = foreign_cores(before, cpu_sample())
        if foreign <= QUIET_CORES or time.monotonic() >= deadline:
            break
    if foreign > QUIET_CORES:
        print(f"warning: other processes keep {foreign} cores busy; the numbers will be noisy", file=sys.stderr)
    return foreign


def pin_self(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def raise_open_files_limit(notes: list[str]) -> None:
    # 500 streams through a proxy hold ~1000 sockets in it; children inherit the raised soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        notes.append(f"RLIMIT_NOFILE soft limit raised from {soft} to {wanted}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` (and so every child's stop) runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- command line ------------------------------------------------------------------------------


def _csv(kind: type, allowed: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[Any]:
        values = [kind(item.strip()) for item in text.split(",") if item.strip()]
        if allowed is not None and (unknown := [value for value in values if value not in allowed]):
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)} (expected some of {', '.join(allowed)})")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--target", action="append", choices=TARGETS, help="repeatable; default all; direct always runs")
    add("--parts", type=_csv(str, PARTS), default=list(DEFAULT_PARTS), help=f"comma list of {', '.join(PARTS)}")
    add("--soak", action="store_true", help="add the soak part (not run by default)")
    add("--quick", action="store_true", help="3 s per wrk point, 1 s warm-up, 1000 TTFB samples")
    add("--duration", type=float, help="seconds per wrk point (default 10, quick 3)")
    add("--warmup", type=float, help="seconds of wrk warm-up per target (default 2, quick 1)")
    add("--connections", type=_csv(int), default=[1, 16, 64], help="comma list (default 1,16,64)")
    add("--ttfb-samples", type=int, help="sequential streamed requests (default 1500, quick 1000)")
    add("--sse-streams", type=int, default=500)
    add("--sse-ramp", type=float, default=0.5, help="seconds over which the streams are opened")
    add("--sse-chunks", type=int, default=50)
    add("--sse-pace-ms", type=float, default=20.0)
    add("--soak-requests", type=_csv(int), default=[100_000, 1_000_000], help="RSS checkpoints")
    add("--soak-timeout", type=float, default=1800.0, help="seconds the soak may take at most")
    add("--model", default="bench", help="the model alias the requests ask for")
    add("--api-key", help="sent as a bearer token (for configs with a master_key)")
    add("--config", type=Path, help="gateway config template; {upstream} = the fake's base URL (…/v1)")
    add("--server", help="passed as `sluicegate serve --server X` (omitted by default)")
    add("--python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable))
    add("--server-core", type=int, default=0)
    add("--load-core", type=int, default=1)
    add("--no-pin", action="store_true", help="do not pin processes to cores")
    add("--startup-timeout", type=float, default=60.0)
    add("--wait-quiet", type=float, default=0.0, help="wait up to this many seconds for other CPU load to stop")
    add("--output", type=Path, default=RESULTS)
    add("--strict", action="store_true", help="exit 1 when a target misses one of its goals")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    notes: list[str] = []
    targets = ["direct", *[name for name in TARGETS[1:] if name in (args.target or TARGETS)]]
    parts = list(dict.fromkeys([*args.parts, *(["soak"] if args.soak else [])]))
    if "gateway" in targets and (why := gateway_available(args.python)) is not None:
        targets.remove("gateway")
        notes.append(f"gateway not benched: {why}")
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if not pin:
        notes.append("processes not pinned (--no-pin, fewer than 2 CPUs, or no taskset)")
    return Settings(
        targets=targets,
        parts=parts,
        duration=args.duration or (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        connections=args.connections,
        ttfb_samples=args.ttfb_samples or (1000 if args.quick else 1500),
        sse_streams=args.sse_streams,
        sse_ramp=args.sse_ramp,
        sse_chunks=args.sse_chunks,
        sse_pace_ms=args.sse_pace_ms,
        soak_checkpoints=sorted(args.soak_requests),
        soak_timeout=args.soak_timeout,
        model=args.model,
        api_key=args.api_key,
        config_template=args.config.read_text() if args.config else DEFAULT_CONFIG,
        server=args.server,
        python=args.python,
        server_core=args.server_core if pin else None,
        load_core=args.load_core if pin else None,
        startup_timeout=args.startup_timeout,
        wait_quiet=args.wait_quiet,
        output=args.output,
        strict=args.strict,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    settings = settings_from(parse_args(argv))
    for note in settings.notes:
        print(f"note: {note}", file=sys.stderr)
    pin_self(settings.load_core)
    raise_open_files_limit(settings.notes)
    with (
        terminate_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="sluicegate-bench-") as workdir,
        Processes(Path(workdir)) as processes,
    ):
        results = Bench(settings, processes, Path(workdir)).run()
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.markdown(results))
    print(f"\nresults written to {settings.output}", file=sys.stderr)
    return 1 if settings.strict and report.any_failed(results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)
