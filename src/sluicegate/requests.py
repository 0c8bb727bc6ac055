"""Validation at the edge: a request is checked once here and trusted everywhere after.

Only what the gateway itself relies on is checked; everything else passes through untouched so that
OpenAI-compatible upstreams receive fields the gateway has never heard of.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def decode_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequestError("The request body is empty; expected a JSON object", code="invalid_json")
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object", code="invalid_json")
    return data


def validate_chat(request: dict[str, Any]) -> dict[str, Any]:
    _require_model(request)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' is required and must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{index}] must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{index}].role must be one of {', '.join(sorted(_ROLES))}", param=f"messages[{index}].role"
            )
    _check_type(request, "stream", bool)
    _check_type(request, "tools", list)
    _check_type(request, "stream_options", dict)
    n = request.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise InvalidRequestError("'n' must be a positive integer", param="n")
    for name in ("max_tokens", "max_completion_tokens"):
        value = request.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidRequestError(f"'{name}' must be a positive integer", param=name)
    return request


def validate_embeddings(request: dict[str, Any]) -> dict[str, Any]:
    _require_model(request)
    value = request.get("input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequestError("'input' must not be empty", param="input")
        return request
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("'input' is required: a string or a non-empty array", param="input")
    return request


def _require_model(request: dict[str, Any]) -> None:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a string", param="model")


def _check_type(request: dict[str, Any], name: str, kind: type) -> None:
    value = request.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequestError(f"'{name}' must be of type {kind.__name__}", param=name)
