"""Pure converters between OpenAI embeddings and Gemini `batchEmbedContents`."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.base import Usage


def model_resource(model: str) -> str:
    """Gemini names models as resources; a bare name means `models/<name>`, `tunedModels/...` stays as is."""
    return model if "/" in model else f"models/{model}"


def input_texts(request: dict[str, Any]) -> list[str]:
    """The texts to embed; Gemini tokenizes itself, so OpenAI token arrays cannot be sent."""
    value = request.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise InvalidRequestError(
        "Gemini embeds text only: input must be a string or a non-empty list of strings, not token arrays",
        param="input",
    )


def embeddings_request(texts: list[str], model: str, dimensions: int | None = None) -> dict[str, Any]:
    """The `BatchEmbedContentsRequest`: one entry per text, each naming the model again as Gemini requires."""
    resource = model_resource(model)
    requests = []
    for text in texts:
        item: dict[str, Any] = {"model": resource, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return {"requests": requests}


def estimated_usage(texts: list[str]) -> Usage:
    # batchEmbedContents reports no token counts; ~4 characters per token is the usual estimate for
    # English text, good enough for budgets and rate limits (it is not what Google bills).
    prompt = math.ceil(sum(len(text) for text in texts) / 4)
    return Usage(prompt_tokens=prompt, total_tokens=prompt)


def embeddings_response(
    response: dict[str, Any], model: str, texts: list[str], *, encoding_format: str = "float"
) -> dict[str, Any]:
    """An OpenAI embeddings `list`, in input order (Gemini answers in request order)."""
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != len(texts):
        raise UpstreamError(
            "Gemini returned a different number of embeddings than inputs", code="upstream_malformed_response"
        )
    usage = estimated_usage(texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encode(item.get("values") or [], encoding_format)}
            for index, item in enumerate(embeddings)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    }


def _encode(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format != "base64":
        return values
    # OpenAI's base64 format: little-endian float32, which the official SDKs decode (and request by default).
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
