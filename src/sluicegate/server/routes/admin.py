"""The admin API: virtual keys, teams and spend reports. Only the master key may call it.

POST   /admin/keys                  create a key: 201 with the clear `key`, shown this once
GET    /admin/keys[?team=]          list keys
GET    /admin/keys/{id}             one key (with its spend this budget period)
PATCH  /admin/keys/{id}             change fields; `null` clears one
DELETE /admin/keys/{id}             revoke
POST   /admin/keys/{id}/rotate      new secret, same id, limits and spend
POST   /admin/teams, GET /admin/teams, GET/PATCH/DELETE /admin/teams/{name}
GET    /admin/spend?group_by=key|team|model|alias|day&from=&to=
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from sluicegate.errors import NotFoundError, PermissionDeniedError
from sluicegate.governance.admin import AdminService
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, method_not_allowed, send_json

if TYPE_CHECKING:
    from sluicegate.context import RequestContext
    from sluicegate.gateway import Gateway

#: admin bodies are small; no reason to accept the chat endpoints' 25 MB
_MAX_BODY = 1024 * 1024
_NO_STORE = [(b"cache-control", b"no-store")]

Operation = Callable[[IncomingRequest, list[str]], Awaitable[tuple[int, Any]]]


def routes(gateway: Gateway) -> RouteTable:
    service = AdminService(gateway.auth.directory, gateway.admission)

    async def body(request: IncomingRequest) -> dict[str, Any]:
        return decode_json_object(await request.body(_MAX_BODY))

    def endpoint(operation: Operation, prefix: str = "") -> Any:
        async def handle(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
            await _require_master_key(gateway, ctx)
            rest = request.scope["path"][len(prefix) :].strip("/") if prefix else ""
            parts = [unquote(part) for part in rest.split("/")] if rest else []
            status, data = await operation(request, parts)
            await send_json(send, status, data, [(b"x-request-id", ctx.request_id.encode()), *_NO_STORE])

        return handle

    # --- keys ----------------------------------------------------------------------------------

    async def create_key(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 201, await service.create_key(await body(request))

    async def list_keys(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.list_keys(_query(request).get("team"))

    async def key_get(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.get_key(_one(parts, "/admin/keys/{id}"))

    async def key_patch(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.update_key(_one(parts, "/admin/keys/{id}"), await body(request))

    async def key_delete(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.revoke_key(_one(parts, "/admin/keys/{id}"))

    async def key_post(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        if len(parts) == 2 and parts[1] == "rotate":
            return 200, await service.rotate_key(parts[0])
        if len(parts) == 1:
            raise method_not_allowed()
        raise NotFoundError("No route: use POST /admin/keys/{id}/rotate", code="route_not_found")

    # --- teams ---------------------------------------------------------------------------------

    async def create_team(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 201, await service.create_team(await body(request))

    async def list_teams(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.list_teams()

    async def team_get(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.get_team(_one(parts, "/admin/teams/{name}"))

    async def team_patch(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.update_team(_one(parts, "/admin/teams/{name}"), await body(request))

    async def team_delete(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        return 200, await service.delete_team(_one(parts, "/admin/teams/{name}"))

    # --- spend ---------------------------------------------------------------------------------

    async def spend(request: IncomingRequest, parts: list[str]) -> tuple[int, Any]:
        query = _query(request)
        return 200, await service.spend(query.get("group_by", "key"), query.get("from"), query.get("to"))

    keys, teams = "/admin/keys", "/admin/teams"
    return {
        keys: {"POST": endpoint(create_key), "GET": endpoint(list_keys)},
        keys + "/*": {
            "GET": endpoint(key_get, keys),
            "PATCH": endpoint(key_patch, keys),
            "DELETE": endpoint(key_delete, keys),
            "POST": endpoint(key_post, keys),
        },
        teams: {"POST": endpoint(create_team), "GET": endpoint(list_teams)},
        teams + "/*": {
            "GET": endpoint(team_get, teams),
            "PATCH": endpoint(team_patch, teams),
            "DELETE": endpoint(team_delete, teams),
        },
        "/admin/spend": {"GET": endpoint(spend)},
    }


async def _require_master_key(gateway: Gateway, ctx: RequestContext) -> None:
    await gateway.authenticate(ctx)
    if ctx.principal.is_admin:
        return
    if gateway.is_open:
        raise PermissionDeniedError(
            "The admin API needs a master key: set master_key in the config or SLUICEGATE_MASTER_KEY",
            code="admin_disabled",
        )
    raise PermissionDeniedError("The admin API accepts only the master key, not virtual keys", code="admin_only")


def _query(request: IncomingRequest) -> dict[str, str]:
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def _one(parts: list[str], shape: str) -> str:
    if len(parts) != 1 or not parts[0]:
        raise NotFoundError(f"No route: expected {shape}", code="route_not_found")
    return parts[0]
