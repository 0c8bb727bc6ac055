"""`POST /v1/rerank`: order documents by relevance to a query (Cohere's shape, which Jina and vLLM also speak).

Request: `{"model", "query", "documents": [str | {"text": str}], "top_n"?, "return_documents"?}`. Answer:
`{"id", "object": "rerank", "model", "results": [{"index", "relevance_score", "document"?}], "usage"}`.
Routed like every other call (aliases, failover, limits, spend); providers without rerank answer 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluicegate.context import RequestContext
from sluicegate.errors import InvalidRequestError
from sluicegate.requests import decode_json_object
from sluicegate.server.asgi import JSON_HEADERS, IncomingRequest, RouteTable, Send, answer_headers, send_bytes

if TYPE_CHECKING:
    from sluicegate.gateway import Gateway


def routes(gateway: Gateway) -> RouteTable:
    limit = gateway.config.server.max_request_bytes

    async def rerank(request: IncomingRequest, ctx: RequestContext, send: Send) -> None:
        await gateway.authenticate(ctx)
        body = validate_rerank(decode_json_object(await request.body(limit)))
        answer = await gateway.rerank(body, ctx)
        await send_bytes(
            send, 200, answer.result.body, JSON_HEADERS + answer_headers(ctx, answer.deployment, answer.attempts)
        )

    table: RouteTable = {"/v1/rerank": {"POST": rerank}}
    table["/rerank"] = table["/v1/rerank"]
    return table


def validate_rerank(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequestError("'model' is required and must be a string", param="model")
    if not isinstance(body.get("query"), str) or not body["query"]:
        raise InvalidRequestError("'query' is required and must be a non-empty string", param="query")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidRequestError("'documents' is required: a non-empty list", param="documents")
    for index, document in enumerate(documents):
        if not isinstance(document, str) and not (isinstance(document, dict) and isinstance(document.get("text"), str)):
            raise InvalidRequestError(
                f"documents[{index}] must be a string or {{'text': string}}", param=f"documents[{index}]"
            )
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InvalidRequestError("'top_n' must be a positive integer", param="top_n")
    return body
