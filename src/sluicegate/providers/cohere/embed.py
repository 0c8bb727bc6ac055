"""Pure converters for Cohere's Embed v2 (`POST /v2/embed`) and Rerank v2 (`POST /v2/rerank`)."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.base import Usage

#: Cohere's v3+ embedding models need to know what the text is for; a document is the usual case
DEFAULT_INPUT_TYPE = "search_document"


def embed_request(request: dict[str, Any], model: str) -> dict[str, Any]:
    """Texts only (Cohere tokenizes itself). `input_type` may be sent by the client as an extra field."""
    value = request.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        raise InvalidRequestError("Cohere embeds text only: input must be a string or a list of strings", param="input")
    body: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": request.get("input_type") or DEFAULT_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    if request.get("dimensions"):
        body["output_dimension"] = request["dimensions"]
    return body


def embed_response(answer: dict[str, Any], model: str, count: int, encoding_format: str = "float") -> dict[str, Any]:
    vectors = (answer.get("embeddings") or {}).get("float")
    if not isinstance(vectors, list) or len(vectors) != count:
        raise UpstreamError(
            "Cohere returned a different number of embeddings than inputs", code="upstream_malformed_response"
        )
    tokens = billed(answer).get("input_tokens") or 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, encoding_format)} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format != "base64":
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def billed(answer: dict[str, Any]) -> dict[str, Any]:
    return ((answer.get("meta") or {}).get("billed_units")) or {}


def rerank_request(request: dict[str, Any], model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "query": request["query"], "documents": document_texts(request)}
    if request.get("top_n") is not None:
        body["top_n"] = request["top_n"]
    if request.get("max_tokens_per_doc") is not None:
        body["max_tokens_per_doc"] = request["max_tokens_per_doc"]
    return body


def document_texts(request: dict[str, Any]) -> list[str]:
    return [doc if isinstance(doc, str) else str(doc.get("text") or "") for doc in request["documents"]]


def rerank_response(answer: dict[str, Any], request: dict[str, Any], model: str) -> dict[str, Any]:
    """The gateway's rerank answer (Cohere's shape, which Jina and vLLM also speak), plus usage."""
    results = answer.get("results")
    if not isinstance(results, list):
        raise UpstreamError("Cohere returned no rerank results", code="upstream_malformed_response")
    texts = document_texts(request)
    converted = []
    for result in results:
        item: dict[str, Any] = {"index": result["index"], "relevance_score": result["relevance_score"]}
        if request.get("return_documents"):
            item["document"] = {"text": texts[result["index"]]}
        converted.append(item)
    usage = rerank_usage(request)
    return {
        "id": answer.get("id") or "rerank",
        "object": "rerank",
        "model": model,
        "results": converted,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "total_tokens": usage.total_tokens,
            "search_units": billed(answer).get("search_units") or 0,
        },
    }


def rerank_usage(request: dict[str, Any]) -> Usage:
    # Rerank is billed in search units, not tokens; ~4 characters per token gives limits and budgets a size.
    characters = len(request["query"]) * len(request["documents"]) + sum(len(text) for text in document_texts(request))
    tokens = math.ceil(characters / 4)
    return Usage(prompt_tokens=tokens, total_tokens=tokens)
