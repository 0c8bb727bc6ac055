"""Small ASGI helpers: read a bounded body, send JSON, send an SSE stream."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from sluicegate.errors import GatewayError, InvalidRequestError, PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Handler = Callable[["IncomingRequest", Any, Send], Awaitable[None]]
#: path -> method -> handler; what every module under `sluicegate.server.routes` contributes
RouteTable = dict[str, dict[str, Handler]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # Tell nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


_CONTROL_HEADERS = frozenset({b"cache-control", b"idempotency-key"})


class IncomingRequest:
    """The parts of an ASGI request the gateway reads, looked up once."""

    __slots__ = (
        "authorization",
        "content_length",
        "control",
        "receive",
        "request_id",
        "scope",
        "traceparent",
        "x_api_key",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.authorization: bytes | None = None
        self.x_api_key: bytes | None = None
        self.request_id: str | None = None
        self.content_length: int | None = None
        self.traceparent: str | None = None
        #: headers that steer the gateway: x-sluicegate-*, cache-control, idempotency-key
        self.control: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    raise InvalidRequestError("invalid Content-Length header") from None
            elif name == b"x-request-id":
                self.request_id = _safe_request_id(value)
            elif name == b"traceparent":
                self.traceparent = value.decode("latin-1")
            elif name == b"x-api-key":
                self.x_api_key = value
            elif name.startswith(b"x-sluicegate-") or name in _CONTROL_HEADERS:
                self.control[name.decode("latin-1")] = value.decode("latin-1")

    def bearer_token(self) -> str | None:
        value = self.authorization
        if value is not None:
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        if self.x_api_key:
            return self.x_api_key.decode("latin-1")
        return None

    async def body(self, limit: int) -> bytes:
        if self.content_length is not None and self.content_length > limit:
            raise _too_large(limit)
        first = await self.receive()
        if first["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = first.get("body", b"")
        if not first.get("more_body", False):
            if len(body) > limit:
                raise _too_large(limit)
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


class ClientGone(Exception):
    """The client disconnected; nobody is left to answer."""


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes")


def _safe_request_id(value: bytes) -> str | None:
    # Echo a client's id only when it is short and printable: it ends up in headers and logs.
    if (
        0 < len(value) <= 128
        and value.isascii()
        and value.replace(b"-", b"").replace(b"_", b"").replace(b".", b"").isalnum()
    ):
        return value.decode()
    return None


_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run (random prefix) and cheap: no system call per request."""
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, data: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, msgspec.json.encode(data), JSON_HEADERS + (headers or []))


async def send_error(send: Send, error: GatewayError, headers: Headers | None = None) -> None:
    await send_bytes(send, error.status, error.to_json(), JSON_HEADERS + error.headers() + (headers or []))


def method_not_allowed() -> InvalidRequestError:
    return InvalidRequestError("Method not allowed", code="method_not_allowed", status=405)


def answer_headers(ctx: Any, deployment: Any, attempts: list[Any]) -> Headers:
    """Headers every answer carries: the request id, who answered and after how many attempts, plus
    whatever the lifecycle's steps added (cache status, guardrail verdicts, cost, rate limits)."""
    headers: Headers = [(b"x-request-id", ctx.request_id.encode())]
    if deployment is not None:
        headers.append((b"x-sluicegate-provider", deployment.label.encode()))
        headers.append((b"x-sluicegate-attempts", str(len(attempts) + 1).encode()))
    if ctx.response_headers:
        headers.extend(ctx.response_headers)
    return headers
