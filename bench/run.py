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

import contextlib
import datetime
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import report
from loadgen import CHAT_PATH, chat_body, run_stream_client, run_wrk, write_wrk_script
from options import Settings, parse_args, settings_from
from processes import (
    Child,
    Processes,
    StartupError,
    cpu_sample,
    foreign_cores,
    free_port,
    http_request,
    memory_mb,
    pinned,
    tree_cpu_seconds,
    wait_http_ready,
    wait_log_line,
)
from under_test import Package, git_revision, render_config

BENCH_DIR = Path(__file__).resolve().parent

#: the stream shape outside the SSE part: 5 chunks, unpaced (what the TTFB part measures)
FAST_STREAM = (5, 0.0)
MAX_SOAK_SEGMENTS = 500
#: cores other processes may keep busy before the numbers are flagged as noisy
QUIET_CORES = 0.1


class TargetError(RuntimeError):
    """A target could not be benched (did not start, or answered the sanity requests wrongly)."""


# --- the run -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, processes: Processes, workdir: Path) -> None:
        self.s = settings
        self.processes = processes
        self.workdir = workdir
        self.package = Package(settings.python, settings.src)
        self.upstream_port = 0
        #: the server under test, None while benching direct
        self.server: Child | None = None

    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {"meta": self._meta(), "targets": {}}
        if "import" in self.s.parts:
            results["import"] = self.package.import_time()
        self.upstream_port = self._start_upstream()
        for name in self.s.targets:
            print(f"== {name}", file=sys.stderr, flush=True)
            quiet = wait_until_quiet(self.s.wait_quiet)
            before = cpu_sample()
            try:
                results["targets"][name] = self._bench_target(name)
            except (TargetError, StartupError, RuntimeError) as exc:
                print(f"   {name} skipped: {exc}", file=sys.stderr, flush=True)
                results["targets"][name] = {"error": str(exc)}
            foreign = foreign_cores(before, cpu_sample())
            results["targets"][name] |= {"foreign_cpu_cores_before": quiet, "foreign_cpu_cores": foreign}
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
            "git": git_revision(self.s.src),
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

    def _start_server(self, name: str) -> tuple[int, Child, float]:
        port = free_port()
        upstream = f"http://127.0.0.1:{self.upstream_port}/v1"
        if name == "passthrough":
            command = [self.s.python, str(BENCH_DIR / "passthrough_proxy.py"), "--upstream", upstream]
            command += ["--port", str(port)]
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            config = self.workdir / "gateway.yaml"
            config.write_text(render_config(self.s.config_template, self.upstream_port))
            command = [self.s.python, "-m", "sluicegate", "serve", "--config", str(config)]
            command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            if self.s.server:
                command += ["--server", self.s.server]
        child = self.processes.start(name, pinned(command, self.s.server_core), env=self.package.env())
        took = wait_http_ready(child, port, "/health/readiness", self.s.startup_timeout)
        print(f"   ready in {took:.2f}s on port {port} (pid {child.pid})", file=sys.stderr, flush=True)
        return port, child, took

    # --- one target -------------------------------------------------------------------------

    def _bench_target(self, name: str) -> dict[str, Any]:
        if name == "direct":
            return self._measure(self.upstream_port, None)
        port, child, took = self._start_server(name)
        try:
            return {"startup_s": round(took, 2), **self._measure(port, child)}
        finally:
            self.processes.stop(child)

    def _measure(self, port: int, child: Child | None) -> dict[str, Any]:
        self.server = child
        result: dict[str, Any] = {"port": port}
        if child is not None:
            time.sleep(0.5)
            result["memory"] = {"idle": memory_mb(child.pid)}
        self._set_stream_profile(*FAST_STREAM)
        sanity_check(port, self.s.model, self.s.api_key)
        if "throughput" in self.s.parts:
            result["throughput"] = self._throughput(port)
        if "ttfb" in self.s.parts:
            result["ttfb"] = self._ttfb(port)
        if "sse" in self.s.parts:
            result["sse"] = self._sse(port)
        if child is not None:
            result["memory"]["after_load"] = memory_mb(child.pid)
            if "soak" in self.s.parts:
                result["soak"] = self._soak(port, child, result.get("throughput", []))
        return result

    def _server_cpu(self) -> float | None:
        return None if self.server is None else tree_cpu_seconds(self.server.pid)

    @staticmethod
    def _per(used: float | None, before: float | None, count: object, scale: float) -> float | None:
        """Server CPU per unit of work (scale 1e6: microseconds, 1e3: milliseconds)."""
        if used is None or before is None or not isinstance(count, int) or count <= 0:
            return None
        return round((used - before) * scale / count, 1)

    def _wrk(self, port: int, connections: int, seconds: float) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        script = write_wrk_script(self.workdir / "post.lua", self.s.model, self.s.api_key)
        cpu_before = self._server_cpu()
        outcome = run_wrk(
            self.processes,
            port=port,
            script=script,
            connections=connections,
            seconds=seconds,
            core=self.s.load_core,
        )
        point = asdict(outcome)
        point["server_cpu_us_per_request"] = self._per(self._server_cpu(), cpu_before, outcome.requests, 1e6)
        return point

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

    def _ttfb(self, port: int) -> dict[str, Any]:
        cpu_before = self._server_cpu()
        outcome = self._stream_client("ttfb", port, {"samples": self.s.ttfb_samples}, 120.0)
        outcome["server_cpu_us_per_stream"] = self._per(self._server_cpu(), cpu_before, outcome.get("requests"), 1e6)
        return outcome

    def _sse(self, port: int) -> dict[str, Any]:
        """Several rounds (the burst is noisy): the median round by p99 max-gap, and every round's summary."""
        self._set_stream_profile(self.s.sse_chunks, self.s.sse_pace_ms)
        try:
            rounds = [self._sse_round(port) for _ in range(self.s.sse_rounds)]
        finally:
            self._set_stream_profile(*FAST_STREAM)
        ranked = sorted(rounds, key=lambda outcome: report.dig(outcome, "max_gap_ms", "p99") or float("inf"))
        median = dict(ranked[(len(ranked) - 1) // 2])
        median["completed"] = min(outcome["completed"] for outcome in rounds)
        median["rounds"] = [
            {"completed": outcome["completed"], "max_gap_p99_ms": report.dig(outcome, "max_gap_ms", "p99")}
            for outcome in rounds
        ]
        return median

    def _sse_round(self, port: int) -> dict[str, Any]:
        options = {"streams": self.s.sse_streams, "ramp": self.s.sse_ramp, "min_events": self.s.sse_chunks}
        stream_seconds = self.s.sse_chunks * self.s.sse_pace_ms / 1000.0
        cpu_before = self._server_cpu()
        outcome = self._stream_client("sse", port, options, timeout=60.0 + 4 * stream_seconds)
        outcome["server_cpu_ms_per_stream"] = self._per(self._server_cpu(), cpu_before, outcome.get("streams"), 1e3)
        time.sleep(0.5)  # let closed connections settle before the next burst
        return outcome

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
            while checkpoints and done >= checkpoints[0] * report.CHECKPOINT_SLACK:
                checkpoints.pop(0)
        return report.soak_summary(samples, self.s.soak_checkpoints, errors, timed_out=bool(checkpoints))


# --- helpers -----------------------------------------------------------------------------------


def sanity_check(port: int, model: str, api_key: str | None) -> None:
    """One plain and one streamed request must succeed, or the target's numbers would measure errors."""
    status, body = http_request(port, "POST", CHAT_PATH, chat_body(model), api_key)
    if status != 200 or b'"choices"' not in body:
        raise TargetError(f"POST {CHAT_PATH} answered {status}: {body[:300]!r}")
    status, body = http_request(port, "POST", CHAT_PATH, chat_body(model, stream=True), api_key)
    if status != 200 or b"data: [DONE]" not in body:
        raise TargetError(f"streaming POST {CHAT_PATH} answered {status}: {body[:300]!r}")


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
    """SIGINT/SIGTERM/SIGHUP unwind as KeyboardInterrupt, so every `finally` (and every child's stop) runs.

    SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then installs no handler.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    settings = settings_from(parse_args(argv, __doc__))
    for note in settings.notes:
        print(f"note: {note}", file=sys.stderr)
    pin_self(settings.load_core)
    raise_open_files_limit(settings.notes)
    with (
        terminate_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="sluicegate-bench-", ignore_cleanup_errors=True) as workdir,
        Processes(Path(workdir)) as processes,
    ):
        results = Bench(settings, processes, Path(workdir)).run()
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report.markdown(results))
    print(f"\nresults written to {settings.output}", file=sys.stderr)
    return 1 if settings.strict and report.any_failed(results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)
