"""Deployment health: breaker state, recent error rate, latency and in-flight requests, per deployment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluicegate.errors import PermissionDeniedError
from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, send_json

if TYPE_CHECKING:
    from sluicegate.context import RequestContext
    from sluicegate.gateway import Gateway


def routes(gateway: Gateway) -> RouteTable:
    async def deployments(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        if not gateway.is_open and not ctx.principal.is_admin:
            raise PermissionDeniedError("Deployment health is for the admin key only")
        await send_json(send, 200, deployment_health(gateway), [(b"x-request-id", ctx.request_id.encode())])

    return {"/v1/deployments": {"GET": deployments}, "/deployments": {"GET": deployments}}


def deployment_health(gateway: Gateway) -> dict[str, Any]:
    router = gateway.router
    data = [
        {
            "id": deployment.label,
            "provider": deployment.provider.name,
            "model": deployment.model,
            "aliases": aliases,
            **router.health.snapshot(deployment),
        }
        for deployment, aliases in router.deployments()
    ]
    return {"object": "list", "data": data}
