"""The web dashboard (`/ui`, its files and JSON endpoints) and the request-log admin API (`/admin/logs`).

Behind the master key: the login page takes it once and sets an HttpOnly session cookie; scripts may send
it as a bearer token instead. Without a master key the dashboard is open, like the API.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from sluicegate.context import RequestContext
from sluicegate.errors import AuthenticationError, GatewayError, InvalidRequestError, NotFoundError
from sluicegate.governance.auth import master_key_of
from sluicegate.observability.dashboard import data
from sluicegate.observability.dashboard.assets import SECURITY_HEADERS, Asset, load_assets
from sluicegate.observability.dashboard.session import Sessions, cookie_value
from sluicegate.observability.logstore import RANGES, RequestFilter
from sluicegate.server.asgi import Handler, IncomingRequest, RouteTable, Send, send_bytes, send_json

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway

_NO_STORE = [(b"cache-control", b"no-store")]
_LOGIN_BODY_LIMIT = 4096


def routes(gateway: Gateway) -> RouteTable:
    if not gateway.config.observability.dashboard:
        return {}
    sessions = Sessions(master_key_of(gateway.config))
    assets = load_assets()

    async def signed_in(request: IncomingRequest, ctx: RequestContext) -> bool:
        if sessions.open or sessions.valid(cookie_value(request.scope["headers"])):
            return True
        return ctx.api_key is not None and await _is_admin(gateway, ctx)

    async def index(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if not await signed_in(request, ctx):
            await _redirect(send, "/ui/login")
            return
        await _send_asset(send, assets["index.html"], request)

    async def login_page(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if sessions.open:
            await _redirect(send, "/ui")
            return
        await _send_login(send, assets["login.html"], 200)

    async def login(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if sessions.open:
            await _redirect(send, "/ui")
            return
        form = parse_qs((await request.body(_LOGIN_BODY_LIMIT)).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        if not key or not await _is_admin(gateway, RequestContext(request_id=ctx.request_id, api_key=key)):
            await _send_login(send, assets["login.html"], 401, "That is not the master key.")
            return
        cookie = sessions.set_cookie(sessions.issue(), _is_https(request))
        await _redirect(send, "/ui", [(b"set-cookie", cookie)])

    async def logout(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await _redirect(send, "/ui/login", [(b"set-cookie", sessions.clear_cookie())])

    def api(handler: Any) -> Handler:
        """A JSON endpoint of the dashboard: signed in (cookie or master key), answers `handler(query)`."""

        async def endpoint(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
            if not await signed_in(request, ctx):
                raise AuthenticationError("Sign in at /ui/login, or send the master key", code="not_signed_in")
            await send_json(send, 200, await handler(_query(request)), _NO_STORE)

        return endpoint

    async def meta(query: dict[str, str]) -> dict[str, Any]:
        return {
            "open": sessions.open,
            "log_store": gateway.recorder.log_store is not None,
            "aliases": gateway.router.aliases,
            "providers": sorted(gateway.config.providers),
            "ranges": list(RANGES),
        }

    async def overview(query: dict[str, str]) -> dict[str, Any]:
        return await data.overview(gateway, query.get("range"), query.get("group"))

    async def recent(query: dict[str, str]) -> dict[str, Any]:
        return await data.requests(gateway, _filter(query))

    async def one(query: dict[str, str]) -> dict[str, Any]:
        found = await data.one_request(gateway, query.get("id", ""))
        if found is None:
            raise NotFoundError("No logged request has that id", code="request_not_found")
        return found

    async def deployments(query: dict[str, str]) -> dict[str, Any]:
        return await data.deployments(gateway)

    async def keys(query: dict[str, str]) -> dict[str, Any]:
        return await data.keys(gateway, query.get("range"))

    async def admin_logs(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        """`GET /admin/logs`: the request log for scripts, master key only (no cookie)."""
        await gateway.authenticate(ctx)
        if not gateway.is_open and not ctx.principal.is_admin:
            raise AuthenticationError("The admin API needs the master key", code="admin_only")
        query = _query(request)
        if "request_id" in query:
            found = await data.one_request(gateway, query["request_id"])
            stored = gateway.recorder.log_store is not None
            result: dict[str, Any] = {"object": "list", "log_store": stored, "data": [found] if found else []}
        else:
            result = {"object": "list", **await data.requests(gateway, _filter(query))}
        await send_json(send, 200, result, [(b"x-request-id", ctx.request_id.encode()), *_NO_STORE])

    table: RouteTable = {
        "/ui": {"GET": index},
        "/ui/login": {"GET": login_page, "POST": login},
        "/ui/logout": {"POST": logout},
        "/ui/api/meta": {"GET": api(meta)},
        "/ui/api/overview": {"GET": api(overview)},
        "/ui/api/requests": {"GET": api(recent)},
        "/ui/api/request": {"GET": api(one)},
        "/ui/api/deployments": {"GET": api(deployments)},
        "/ui/api/keys": {"GET": api(keys)},
        "/admin/logs": {"GET": admin_logs},
    }
    for name, asset in assets.items():
        if not name.endswith(".html"):
            table[f"/ui/static/{name}"] = {"GET": _static(asset)}
    return table


async def _is_admin(gateway: Gateway, ctx: RequestContext) -> bool:
    try:
        await gateway.authenticate(ctx)
    except GatewayError:
        return False
    return ctx.principal.is_admin


def _static(asset: Asset) -> Handler:
    async def serve(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await _send_asset(send, asset, request)

    return serve


async def _send_asset(send: Send, asset: Asset, request: IncomingRequest) -> None:
    headers = [(b"content-type", asset.content_type), (b"etag", asset.etag), (b"cache-control", b"no-cache")]
    if any(name == b"if-none-match" and value == asset.etag for name, value in request.scope["headers"]):
        await send_bytes(send, 304, b"", headers)
        return
    await send_bytes(send, 200, asset.body, headers + SECURITY_HEADERS)


async def _send_login(send: Send, page: Asset, status: int, error: str = "") -> None:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = page.body.replace(b"<!--error-->", message.encode())
    await send_bytes(send, status, body, [(b"content-type", page.content_type), *_NO_STORE, *SECURITY_HEADERS])


async def _redirect(send: Send, location: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, 303, b"", [(b"location", location.encode()), *_NO_STORE, *(headers or [])])


def _is_https(request: IncomingRequest) -> bool:
    if request.scope.get("scheme") == "https":
        return True
    return any(name == b"x-forwarded-proto" and value == b"https" for name, value in request.scope["headers"])


def _query(request: IncomingRequest) -> dict[str, str]:
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return {name: values[0] for name, values in parse_qs(raw).items()}


def _filter(query: dict[str, str]) -> RequestFilter:
    return RequestFilter(
        alias=query.get("alias") or None,
        key_id=query.get("key_id") or None,
        deployment=query.get("deployment") or None,
        errors_only=query.get("errors") in ("1", "true"),
        since=_number(query, "since"),
        until=_number(query, "until"),
        limit=int(_number(query, "limit") or 50),
    )


def _number(query: dict[str, str], name: str) -> float | None:
    text = query.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be a number", param=name) from None
    if not math.isfinite(value):
        raise InvalidRequestError(f"'{name}' must be a finite number", param=name)
    return value
