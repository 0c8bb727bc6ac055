"""The OpenAI-compatible API: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sluicegate.context import RequestContext
from sluicegate.errors import GatewayError
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    IncomingRequest,
    Receive,
    RouteTable,
    Send,
    answer_headers,
    send_bytes,
    send_json,
)
from sluicegate.streaming.sse import frame

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway, StreamAnswer

log = logging.getLogger("sluicegate.server")

_DONE_FRAME = b"data: [DONE]\n\n"


def routes(gateway: Gateway) -> RouteTable:
    limit = gateway.config.server.max_request_bytes

    async def chat_completions(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        body = decode_json_object(await request.body(limit))
        if body.get("stream") is True:
            answer = await gateway.stream_chat(body, ctx)
            await stream_sse(answer, ctx, request.receive, send)
            return
        chat = await gateway.chat(body, ctx)
        await send_bytes(
            send, 200, chat.result.body, JSON_HEADERS + answer_headers(ctx, chat.deployment, chat.attempts)
        )

    async def embeddings(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        body = decode_json_object(await request.body(limit))
        answer = await gateway.embeddings(body, ctx)
        headers = JSON_HEADERS + answer_headers(ctx, answer.deployment, answer.attempts)
        await send_bytes(send, 200, answer.result.body, headers)

    async def models(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        await send_json(send, 200, gateway.list_models(), [(b"x-request-id", ctx.request_id.encode())])

    table: RouteTable = {
        "/v1/chat/completions": {"POST": chat_completions},
        "/v1/embeddings": {"POST": embeddings},
        "/v1/models": {"GET": models},
    }
    # The OpenAI SDK and many tools also use the paths without the /v1 prefix.
    for path in ("/chat/completions", "/embeddings", "/models"):
        table[path] = table["/v1" + path]
    return table


async def stream_sse(answer: StreamAnswer, ctx: RequestContext, receive: Receive, send: Send) -> None:
    """Write an OpenAI chunk stream as SSE, ending with `[DONE]` or, after a late failure, an error event."""
    headers = SSE_HEADERS + answer_headers(ctx, answer.deployment, answer.attempts)
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


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _end_stream(send: Send, last: bytes) -> None:
    await send({"type": "http.response.body", "body": last, "more_body": False})
