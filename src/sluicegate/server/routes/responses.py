"""OpenAI's Responses API, the stateless subset: `POST /v1/responses` (JSON and SSE events).

The request becomes the internal chat request and goes through the same `Gateway.chat` /
`Gateway.stream_chat` as every other dialect, so routing, caching, guardrails, limits and costs apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluicegate.context import RequestContext
from sluicegate.ingress import responses
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, answer_headers, send_json
from sluicegate.server.routes.anthropic import send_event_stream

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway


def routes(gateway: Gateway) -> RouteTable:
    limit = gateway.config.server.max_request_bytes

    async def create(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        body = decode_json_object(await request.body(limit))
        chat_request = responses.chat_request(body)
        if chat_request.get("stream"):
            answer = await gateway.stream_chat(chat_request, ctx)
            encoder = responses.StreamEncoder(body)
            await send_event_stream(answer, encoder.feed, encoder.finish, encoder.error, ctx, request.receive, send)
            return
        chat = await gateway.chat(chat_request, ctx)
        answer_body = responses.from_chat_completion(chat.result.as_dict(), body)
        await send_json(send, 200, answer_body, answer_headers(ctx, chat.deployment, chat.attempts))

    table: RouteTable = {"/v1/responses": {"POST": create}}
    table["/responses"] = table["/v1/responses"]
    return table
