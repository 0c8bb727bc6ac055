"""`GET /metrics`: Prometheus text exposition of the gateway's own metrics (see observability/metrics.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST

from sluicegate.errors import PermissionDeniedError
from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, send_bytes

if TYPE_CHECKING:
    from sluicegate.context import RequestContext
    from sluicegate.gateway import Gateway

_HEADERS = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"cache-control", b"no-store")]


def routes(gateway: Gateway) -> RouteTable:
    metrics = gateway.recorder.metrics
    if metrics is None:
        return {}
    require_key = gateway.config.observability.metrics.require_key

    async def scrape(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if require_key:
            await gateway.authenticate(ctx)
            if not ctx.principal.is_admin and not gateway.is_open:
                raise PermissionDeniedError("GET /metrics needs the master key")
        await send_bytes(send, 200, metrics.render(), _HEADERS)

    return {"/metrics": {"GET": scrape}}
