"""Pure converters for OpenAI-compatible upstreams: the request is already in their format.

No I/O and no side effects, so each is tested with plain input/output pairs.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluicegate.errors import UpstreamError
from sluicegate.providers.base import Usage, usage_from_openai_json

#: fields that only steer the gateway and must never reach a provider (routing: fallbacks, num_retries, timeout)
GATEWAY_FIELDS = frozenset({"fallbacks", "num_retries", "timeout", "metadata_sluicegate"})


def chat_request(
    request: dict[str, Any],
    model: str,
    drop: tuple[str, ...] = (),
    *,
    stream: bool = False,
    rename: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The upstream body: the client's request with the deployment's model name, unknown fields kept,
    and the host's quirks applied (fields it rejects dropped, fields it names differently renamed)."""
    body = {**request, "model": model}
    for name in drop:
        body.pop(name, None)
    for ours, theirs in rename:
        if ours in body:
            body[theirs] = body.pop(ours)
    for name in GATEWAY_FIELDS:
        body.pop(name, None)
    if stream:
        # The gateway always needs usage for accounting; whether the client sees it is decided later.
        body["stream"] = True
        body["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return msgspec.json.encode(body)


class _Completion(msgspec.Struct):
    choices: list[msgspec.Raw]


class _Embeddings(msgspec.Struct):
    data: list[msgspec.Raw]


_completion_decoder = msgspec.json.Decoder(_Completion)
_embeddings_decoder = msgspec.json.Decoder(_Embeddings)


def completion_usage(body: bytes) -> Usage:
    """Check that `body` is a chat completion and read its usage; garbage is a failed attempt."""
    try:
        _completion_decoder.decode(body)
    except msgspec.DecodeError:
        raise UpstreamError(
            "the provider returned a malformed chat completion", code="upstream_malformed_response"
        ) from None
    return usage_from_openai_json(body) or Usage()


def embeddings_usage(body: bytes) -> Usage:
    try:
        _embeddings_decoder.decode(body)
    except msgspec.DecodeError:
        raise UpstreamError(
            "the provider returned a malformed embeddings answer", code="upstream_malformed_response"
        ) from None
    return usage_from_openai_json(body) or Usage()


def is_error_chunk(data: bytes) -> bool:
    """OpenAI-compatible servers report failures inside a 200 stream as `data: {"error": ...}`."""
    return data[:16].lstrip().startswith(b'{"error"')
