"""Probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, send_json

if TYPE_CHECKING:
    from sluicegate.context import RequestContext
    from sluicegate.gateway import Gateway


def routes(gateway: Gateway) -> RouteTable:
    async def liveness(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def readiness(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if gateway.ready:
            await send_json(send, 200, {"status": "ready"})
        else:
            await send_json(send, 503, {"status": "draining"})

    return {"/health/liveness": {"GET": liveness}, "/health/readiness": {"GET": readiness}}
