"""The package under test: which interpreter and source tree, whether its server can start, its import time."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMPORT_TIMEOUT_S = 60.0
HELP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Package:
    python: str
    #: put first on PYTHONPATH, so the bench measures this tree even when another copy is installed
    src: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), env.get("PYTHONPATH")]))
        return env

    def _run(self, arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, *arguments], capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )

    def server_problem(self, server: str | None) -> str | None:
        """None when `python -m sluicegate serve --help` works (and knows --server if one is asked for)."""
        try:
            done = self._run(["-m", "sluicegate", "serve", "--help"], HELP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`sluicegate serve --help` did not finish within {HELP_TIMEOUT_S:.0f}s"
        if done.returncode != 0:
            return (done.stderr.strip() or done.stdout.strip())[-500:]
        if server and "--server" not in done.stdout:
            return f"`sluicegate serve` has no --server option yet (asked for --server {server})"
        return None

    def import_time(self, repeats: int = 5) -> dict[str, Any]:
        """Best of `repeats`: the import alone (timed inside the interpreter), and the whole `python -c` process."""
        code = "import time; t = time.perf_counter(); import sluicegate; print(time.perf_counter() - t)"
        inner, whole = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            done = self._run(["-c", code], IMPORT_TIMEOUT_S)
            whole.append(time.perf_counter() - began)
            if done.returncode != 0:
                return {"error": done.stderr.strip()[-500:]}
            inner.append(float(done.stdout.strip()))
        bare = min(self._timed(["-c", "pass"]) for _ in range(repeats))
        return {
            "import_ms": round(min(inner) * 1000, 1),
            "process_ms": round(min(whole) * 1000, 1),
            "bare_interpreter_ms": round(bare * 1000, 1),
            "slowest_modules": self.slowest_imports(),
        }

    def _timed(self, arguments: list[str]) -> float:
        began = time.perf_counter()
        self._run(arguments, IMPORT_TIMEOUT_S)
        return time.perf_counter() - began

    def slowest_imports(self, count: int = 8) -> list[dict[str, Any]]:
        """The modules with the largest self time in `python -X importtime -c 'import sluicegate'`."""
        done = self._run(["-X", "importtime", "-c", "import sluicegate"], IMPORT_TIMEOUT_S)
        rows: list[dict[str, Any]] = []
        for line in done.stderr.splitlines():
            fields = line.removeprefix("import time:").split("|")
            if len(fields) == 3 and fields[0].strip().isdigit():
                self_us, cumulative_us, module = int(fields[0]), int(fields[1]), fields[2].strip()
                rows.append({"module": module, "self_ms": self_us / 1000, "cumulative_ms": cumulative_us / 1000})
        return sorted(rows, key=lambda row: row["self_ms"], reverse=True)[:count]


def git_revision(src: Path) -> dict[str, Any]:
    """The commit the source tree is at, and whether it has uncommitted changes (None outside a checkout)."""
    unknown: dict[str, Any] = {"head": None, "dirty": None}
    try:
        head = _git(src, "rev-parse", "--short", "HEAD")
        status = _git(src, "status", "--porcelain", "--", ".")
    except (OSError, subprocess.TimeoutExpired):
        return unknown
    if head.returncode != 0:
        return unknown
    return {"head": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _git(src: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(src), *arguments], capture_output=True, text=True, timeout=10, check=False)


def render_config(template: str, upstream_port: int) -> str:
    # Plain replacement, not str.format: YAML flow mappings are full of braces.
    return template.replace("{upstream}", f"http://127.0.0.1:{upstream_port}/v1").replace(
        "{upstream_port}", str(upstream_port)
    )
