"""Canonical hashes of requests: what changes the answer goes in, transport and bookkeeping stay out.

A key must not depend on the order of JSON keys or on how a number was spelled: `{"a":1,"b":2}` and
`{"b":2,"a":1}` are the same request, and so are `"temperature": 0` and `"temperature": 0.0`. (A gateway
whose keys hashed the raw body, map order included, never hit its cache at all.)
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

#: fields that do not change the answer: transport, caller identity, bookkeeping
IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "request_id",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)
#: fields an idempotency fingerprint ignores: the same call streamed or not is the same call
TRANSPORT_FIELDS = frozenset({"stream", "stream_options"})

_encoder = msgspec.json.Encoder(order="sorted")


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical(request: dict[str, Any], ignored: frozenset[str] = IGNORED_FIELDS) -> bytes:
    """The request as bytes that are equal exactly when the answer-relevant content is equal."""
    return _encoder.encode({key: _normalise(value) for key, value in request.items() if key not in ignored})


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def request_key(request: dict[str, Any], namespace: str) -> str:
    """The exact-cache key: the namespace, then the hash of everything that changes the answer."""
    return f"{namespace}:{digest(canonical(request))}"


def fingerprint(request: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the whole body but for whether the answer is streamed."""
    return digest(canonical(request, TRANSPORT_FIELDS))


def context_key(request: dict[str, Any], namespace: str, scope: str) -> str:
    """What must match exactly for a semantic hit: everything but the last user turn's text.

    scope `full` keeps earlier turns in the context; `system_and_tools` keeps only system/developer messages,
    so two conversations that end in similar questions may share answers.
    """
    messages = request.get("messages") or []
    last = _last_user_index(messages)
    if scope == "system_and_tools":
        kept = [m for m in messages if m.get("role") in ("system", "developer")]
    else:
        kept = [m for i, m in enumerate(messages) if i != last]
    rest = {key: value for key, value in request.items() if key != "messages"}
    rest["messages"] = kept
    return f"{namespace}:ctx:{digest(canonical(rest))}"


def prompt_text(request: dict[str, Any]) -> str | None:
    """The last user turn's text, which the semantic cache embeds; None when it has no text (images only)."""
    messages = request.get("messages") or []
    last = _last_user_index(messages)
    if last is None:
        return None
    content = messages[last].get("content")
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if len(parts) != len(content):
            return None  # images, audio, files: the text alone does not say what is asked
        return "\n".join(parts) or None
    return None


def _last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return None
