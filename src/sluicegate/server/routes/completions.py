"""OpenAI's legacy text completions: `POST /v1/completions` (JSON and SSE).

The prompt is converted to the internal chat request and goes through the same `Gateway.chat` /
`Gateway.stream_chat` as a chat client's, so routing, caching, guardrails, limits and costs apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

from sluicegate.context import RequestContext
from sluicegate.ingress import completions
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import IncomingRequest, RouteTable, Send, answer_headers, send_json
from sluicegate.server.routes.openai import stream_sse

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway


def routes(gateway: Gateway) -> RouteTable:
    limit = gateway.config.server.max_request_bytes

    async def create(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        body = decode_json_object(await request.body(limit))
        chat_request = completions.chat_request(body)
        if chat_request.get("stream") is True:
            answer = await gateway.stream_chat(chat_request, ctx)
            # Same SSE framing as chat (`data:` lines, `[DONE]`), only the chunk shape differs.
            await stream_sse(replace(answer, chunks=_legacy_chunks(answer.chunks)), ctx, request.receive, send)
            return
        chat = await gateway.chat(chat_request, ctx)
        answer_body = completions.completion_response(chat.result.as_dict())
        await send_json(send, 200, answer_body, answer_headers(ctx, chat.deployment, chat.attempts))

    table: RouteTable = {"/v1/completions": {"POST": create}}
    table["/completions"] = table["/v1/completions"]
    return table


async def _legacy_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield completions.completion_chunk(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
