"""Routes -> the gateway. The HTTP layer parses, authenticates by header and writes; it knows no provider."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from sluicegate.errors import GatewayError, NotFoundError
from sluicegate.gateway import Gateway, RequestContext, StreamAnswer
from sluicegate.requests import decode_json_object
from sluicegate.routing.router import Attempt, Deployment
from sluicegate.server.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    ClientGone,
    Headers,
    IncomingRequest,
    Receive,
    Scope,
    Send,
    method_not_allowed,
    new_request_id,
    send_bytes,
    send_error,
    send_json,
)
from sluicegate.streaming.sse import frame

log = logging.getLogger("sluicegate.server")

Handler = Callable[["App", IncomingRequest, RequestContext, Send], Awaitable[None]]
_DONE_FRAME = b"data: [DONE]\n\n"


class App:
    """The ASGI application."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.max_request_bytes = gateway.config.server.max_request_bytes
        self.ready = True
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": App.chat_completions},
            "/v1/embeddings": {"POST": App.embeddings},
            "/v1/models": {"GET": App.models},
            "/health/liveness": {"GET": App.liveness},
            "/health/readiness": {"GET": App.readiness},
        }
        # The OpenAI SDK and many tools also use the paths without the /v1 prefix.
        for path in ("/chat/completions", "/embeddings", "/models"):
            self._routes[path] = self._routes["/v1" + path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext()
        try:
            request = IncomingRequest(scope, receive)
            ctx.request_id = request.request_id or new_request_id()
            handler = self._handler(scope["path"], scope["method"])
            ctx.api_key = request.bearer_token()
            ctx.forward_headers = {"x-request-id": ctx.request_id}
            if request.traceparent:
                ctx.forward_headers["traceparent"] = request.traceparent
            await handler(self, request, ctx, send)
        except GatewayError as error:
            await send_error(send, error, _id_header(ctx))
        except ClientGone:
            return
        except Exception:
            log.exception("unexpected error serving request %s", ctx.request_id)
            internal = GatewayError("The gateway hit an internal error; the request id is in x-request-id")
            await send_error(send, internal, _id_header(ctx))

    def _handler(self, path: str, method: str) -> Handler:
        methods = self._routes.get(path.rstrip("/") or "/")
        if methods is None:
            raise NotFoundError(f"No route for {method} {path}", code="route_not_found")
        handler = methods.get(method)
        if handler is None:
            raise method_not_allowed()
        return handler

    async def chat_completions(self, request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        self.gateway.authenticate(ctx)
        body = decode_json_object(await request.body(self.max_request_bytes))
        if body.get("stream") is True:
            await self._stream(await self.gateway.stream_chat(body, ctx), ctx, request.receive, send)
            return
        answer = await self.gateway.chat(body, ctx)
        headers = JSON_HEADERS + _routing_headers(ctx, answer.deployment, answer.attempts)
        await send_bytes(send, 200, answer.result.body, headers)

    async def _stream(self, answer: StreamAnswer, ctx: RequestContext, receive: Receive, send: Send) -> None:
        headers = SSE_HEADERS + _routing_headers(ctx, answer.deployment, answer.attempts)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # The server drops writes to a client that has gone; watch for it so the upstream is closed at once.
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        chunks = answer.chunks
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": b"data: " + chunk + b"\n\n", "more_body": True})
                if gone.is_set():
                    log.info("client left stream %s; closing the upstream", ctx.request_id)
                    return
        except GatewayError as error:
            # Headers are gone already: end the stream with an OpenAI-shaped error event instead of hanging.
            log.warning("stream %s failed after it started: %s", ctx.request_id, error.message)
            await _end_stream(send, frame(error.to_json()))
            return
        except Exception:
            log.exception("unexpected error in stream %s", ctx.request_id)
            internal = GatewayError("The gateway hit an internal error mid-stream; the request id is in x-request-id")
            await _end_stream(send, frame(internal.to_json()))
            return
        finally:
            watcher.cancel()
            await chunks.aclose()  # type: ignore[attr-defined]
        await _end_stream(send, _DONE_FRAME)

    async def embeddings(self, request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        self.gateway.authenticate(ctx)
        body = decode_json_object(await request.body(self.max_request_bytes))
        answer = await self.gateway.embeddings(body, ctx)
        headers = JSON_HEADERS + _routing_headers(ctx, answer.deployment, answer.attempts)
        await send_bytes(send, 200, answer.result.body, headers)

    async def models(self, request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        self.gateway.authenticate(ctx)
        await send_json(send, 200, self.gateway.list_models(), _id_header(ctx))

    async def liveness(self, request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def readiness(self, request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        if self.ready:
            await send_json(send, 200, {"status": "ready"})
        else:
            await send_json(send, 503, {"status": "draining"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _end_stream(send: Send, last: bytes) -> None:
    await send({"type": "http.response.body", "body": last, "more_body": False})


def _id_header(ctx: RequestContext) -> Headers:
    return [(b"x-request-id", ctx.request_id.encode())] if ctx.request_id else []


def _routing_headers(ctx: RequestContext, deployment: Deployment, attempts: list[Attempt]) -> Headers:
    return [
        (b"x-request-id", ctx.request_id.encode()),
        (b"x-sluicegate-provider", deployment.label.encode()),
        (b"x-sluicegate-attempts", str(len(attempts) + 1).encode()),
    ]


def create_app() -> App:
    """Factory for ASGI servers started with an import string (several workers): reads SLUICEGATE_CONFIG."""
    from sluicegate.autoconfig import gateway_from_environment

    return App(gateway_from_environment(os.environ.get("SLUICEGATE_CONFIG")))
