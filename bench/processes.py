"""The processes a bench run starts: start pinned, wait until ready, measure memory, stop by PID.

Every child is started in its own session (so a Ctrl-C in the terminal reaches the bench, which then stops
its children in order) and recorded in `Processes`; leaving the `with` block stops all of them, on success,
error or interrupt. Only processes started here are ever signalled.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOG_TAIL_CHARS = 3000


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""


class StartupError(RuntimeError):
    """A child exited or did not become ready; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(command: list[str], core: int | None) -> list[str]:
    """Prefix a command with `taskset -c CORE` (taskset execs, so the PID stays the command's own)."""
    return command if core is None else ["taskset", "-c", str(core), *command]


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._children: list[Child] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        # Recreated if something swept the temporary directory during a long run.
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self._children.append(child)
        return child

    def run(self, name: str, command: list[str], timeout: float) -> str:
        """Run a command to completion and return its output; it is stopped if the bench is interrupted."""
        child = self.start(name, command)
        try:
            child.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} did not finish within {timeout:.0f}s") from None
        finally:
            self.stop(child)
        return child.log.read_text(errors="replace")

    def stop(self, child: Child, grace: float = 5.0) -> None:
        if child not in self._children:
            return
        self._children.remove(child)
        _stop(child.popen, grace)

    def stop_all(self) -> None:
        for child in reversed(list(self._children)):
            self.stop(child)


def _exited_unreaped(pid: int, timeout: float) -> bool:
    # WNOWAIT leaves the child a zombie, so its PID (and process group id) cannot be reused while we look.
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _stop(popen: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child, SIGKILL it after `grace`, then kill what it left behind in its own process group."""
    if popen.returncode is not None:
        return
    pid = popen.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _exited_unreaped(pid, grace):
        _signal_group(pid, signal.SIGKILL)
        _exited_unreaped(pid, grace)
    # Workers a server forked are in the group we created for it (pgid == its PID, not yet reaped).
    _signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)


# --- readiness ---------------------------------------------------------------------------------


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, api_key: str | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_http_ready(child: Child, port: int, path: str, timeout: float) -> float:
    """Poll GET path until it answers 200; returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if child.popen.poll() is not None:
            raise StartupError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        try:
            if http_request(port, "GET", path, timeout=1.0)[0] == 200:
                return time.monotonic() - began
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise StartupError(f"{child.name} was not ready on port {port} after {timeout:.0f}s:\n{child.log_tail()}")


def wait_log_line(child: Child, prefix: str, timeout: float) -> str:
    """Wait for a line starting with prefix in the child's log (how the fake upstream reports its port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in child.log_tail().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        if child.popen.poll() is not None:
            raise StartupError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        time.sleep(0.05)
    raise StartupError(f"{child.name} did not print {prefix!r} within {timeout:.0f}s:\n{child.log_tail()}")


# --- memory ------------------------------------------------------------------------------------


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields after the last ')' are safe.
    return int(stat.rpartition(")")[2].split()[1])


def process_tree(root: int) -> list[int]:
    """root and all its descendants (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree.extend(frontier)
    return tree


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mb(root: int) -> dict[str, float | int]:
    """VmRSS (now) and VmHWM (peak) summed over the process tree, in MiB."""
    pids = process_tree(root)
    return {
        "rss_mb": round(sum(_status_kb(pid, "VmRSS") for pid in pids) / 1024, 1),
        "peak_mb": round(sum(_status_kb(pid, "VmHWM") for pid in pids) / 1024, 1),
        "processes": len(pids),
    }


# --- CPU used by others ------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    wall: float
    machine_busy: float
    ours: float


def _machine_busy_seconds() -> float:
    # cpu user nice system idle iowait irq softirq steal ...
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by root and its descendants, reaped ones included."""
    # utime stime cutime cstime: reaped children (wrk runs, clients) are in their parent's cutime/cstime.
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def cpu_sample() -> CpuSample:
    return CpuSample(time.monotonic(), _machine_busy_seconds(), tree_cpu_seconds(os.getpid()))


def foreign_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores kept busy by processes outside the bench between two samples (0.5 = half a core)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    foreign = (after.machine_busy - before.machine_busy) - (after.ours - before.ours)
    return round(max(0.0, foreign / wall), 2)
