"""Starting the HTTP server: uvicorn with uvloop and httptools (see the README's design notes for why)."""

from __future__ import annotations

import os

import uvicorn

from sluicegate.gateway import Gateway
from sluicegate.server.lifecycle import serve

_COMMON = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,
    "log_level": "warning",
    "backlog": 4096,
    "timeout_keep_alive": 75,
    # The gateway is the edge it reports on; forwarded-for rewriting and the Server header cost time per request.
    "proxy_headers": False,
    "server_header": False,
}


def run_server(gateway: Gateway, *, host: str, port: int, workers: int = 1, config_path: str | None = None) -> None:
    if workers <= 1:
        # Drain on SIGTERM, reload on SIGHUP / file change: see server/lifecycle.py.
        serve(gateway, host=host, port=port, config_path=config_path, options=_COMMON)
        return
    # Several processes: each worker builds its own gateway from the same file.
    if config_path:
        os.environ["SLUICEGATE_CONFIG"] = os.path.abspath(config_path)
    uvicorn.run("sluicegate.server.app:create_app", factory=True, host=host, port=port, workers=workers, **_COMMON)  # type: ignore[arg-type]
