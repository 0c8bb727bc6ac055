"""Anthropic's Messages API: `POST /v1/messages` (JSON and SSE) and `POST /v1/messages/count_tokens`.

The request is converted to the internal chat request and goes through the same `Gateway.chat` /
`Gateway.stream_chat` as an OpenAI client's, so routing, caching, guardrails, limits and costs apply
unchanged. Errors are rendered in Anthropic's shape so the anthropic SDK raises its own exception classes.
Auth: `x-api-key` (what the SDK sends) or `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from sluicegate.context import RequestContext
from sluicegate.errors import GatewayError
from sluicegate.ingress import anthropic_messages
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    Headers,
    IncomingRequest,
    Receive,
    RouteTable,
    Send,
    answer_headers,
    send_bytes,
    send_json,
)

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway, StreamAnswer

log = logging.getLogger("sluicegate.server")

#: encodes one OpenAI chunk into the client's event frames (may be empty), and closes the stream
Encoder = Callable[[bytes], bytes]


def routes(gateway: Gateway) -> RouteTable:
    limit = gateway.config.server.max_request_bytes

    async def messages(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        try:
            await gateway.authenticate(ctx)
            body = decode_json_object(await request.body(limit))
            chat_request = anthropic_messages.chat_request(body)
            model = chat_request["model"]
            if chat_request.get("stream"):
                answer = await gateway.stream_chat(chat_request, ctx)
                encoder = anthropic_messages.StreamEncoder(model)
                await send_event_stream(
                    answer, encoder.feed, encoder.finish, anthropic_messages.error_event, ctx, request.receive, send
                )
                return
            chat = await gateway.chat(chat_request, ctx)
            message = anthropic_messages.message_response(chat.result.as_dict(), model)
            await send_json(send, 200, message, answer_headers(ctx, chat.deployment, chat.attempts))
        except GatewayError as error:
            await send_anthropic_error(send, error, ctx)
        except Exception:
            # Anthropic clients must get Anthropic's shape even for the gateway's own bugs.
            log.exception("unexpected error serving request %s", ctx.request_id)
            await send_anthropic_error(send, _internal(), ctx)

    async def count_tokens(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        try:
            await gateway.authenticate(ctx)
            body = decode_json_object(await request.body(limit))
            counted = anthropic_messages.count_tokens(body)
            # An unknown model is a 404 here as it would be on /v1/messages.
            gateway.router.candidates(body["model"])
            await send_json(send, 200, counted, [(b"x-request-id", ctx.request_id.encode())])
        except GatewayError as error:
            await send_anthropic_error(send, error, ctx)
        except Exception:
            log.exception("unexpected error serving request %s", ctx.request_id)
            await send_anthropic_error(send, _internal(), ctx)

    return {"/v1/messages": {"POST": messages}, "/v1/messages/count_tokens": {"POST": count_tokens}}


def _internal() -> GatewayError:
    return GatewayError("The gateway hit an internal error; the request id is in x-request-id")


async def send_anthropic_error(send: Send, error: GatewayError, ctx: RequestContext) -> None:
    headers: Headers = JSON_HEADERS + error.headers() + [(b"x-request-id", ctx.request_id.encode())]
    await send_bytes(send, error.status, msgspec.json.encode(anthropic_messages.error_body(error)), headers)


async def send_event_stream(
    answer: StreamAnswer,
    encode: Encoder,
    finish: Callable[[], bytes],
    error_event: Callable[[GatewayError], bytes],
    ctx: RequestContext,
    receive: Receive,
    send: Send,
) -> None:
    """Write a stream in a client dialect with named SSE events (Anthropic, Responses).

    Each OpenAI chunk is encoded as it arrives, nothing is buffered. A failure after the headers ends the
    stream with the dialect's error event; a client that leaves closes the upstream at once.
    """
    headers = SSE_HEADERS + answer_headers(ctx, answer.deployment, answer.attempts)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(receive, gone))
    chunks = answer.chunks
    last = b""
    try:
        async for chunk in chunks:
            frames = encode(chunk)
            if frames:
                await send({"type": "http.response.body", "body": frames, "more_body": True})
            if gone.is_set():
                log.info("client left stream %s; closing the upstream", ctx.request_id)
                return
        last = finish()
    except GatewayError as error:
        log.warning("stream %s failed after it started: %s", ctx.request_id, error.message)
        last = error_event(error)
    except Exception:
        log.exception("unexpected error in stream %s", ctx.request_id)
        last = error_event(
            GatewayError("The gateway hit an internal error mid-stream; the request id is in x-request-id")
        )
    finally:
        watcher.cancel()
        await _aclose(chunks)
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose: Any = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
