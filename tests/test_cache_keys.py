"""Cache keys: the same request always gives the same key, whatever its JSON looked like on the wire."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from sluicegate.cache.keys import context_key, fingerprint, prompt_text, request_key

REQUEST: dict[str, Any] = {
    "model": "smart",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"},
    ],
    "temperature": 0,
    "max_tokens": 50,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    "response_format": {"type": "json_object"},
}


def _wire(data: dict[str, Any], *, sort: bool = False, spaces: bool = False) -> dict[str, Any]:
    """The request as the server would decode it from a body serialised another way."""
    text = json.dumps(data, sort_keys=sort, separators=(", ", ": ") if spaces else (",", ":"))
    decoded: dict[str, Any] = msgspec.json.decode(text.encode())
    return decoded


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reversed(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(item) for item in value]
    return value


def test_byte_identical_requests_give_the_same_key() -> None:
    body = json.dumps(REQUEST).encode()
    keys = {request_key(msgspec.json.decode(body), "ns") for _ in range(5)}
    assert len(keys) == 1


def test_reordered_keys_and_whitespace_give_the_same_key() -> None:
    key = request_key(REQUEST, "ns")
    assert request_key(_wire(REQUEST, sort=True), "ns") == key
    assert request_key(_wire(REQUEST, spaces=True), "ns") == key
    assert request_key(_reversed(REQUEST), "ns") == key  # nested objects reordered too


def test_number_spelling_does_not_change_the_key() -> None:
    assert request_key({**REQUEST, "temperature": 0.0}, "ns") == request_key(REQUEST, "ns")


def test_irrelevant_fields_do_not_change_the_key() -> None:
    key = request_key(REQUEST, "ns")
    noisy = {
        **REQUEST,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-123",
        "metadata": {"trace": "abc"},
        "request_id": "r-1",
        "store": False,
    }
    assert request_key(noisy, "ns") == key


def test_everything_that_changes_the_answer_changes_the_key() -> None:
    key = request_key(REQUEST, "ns")
    variants = [
        {**REQUEST, "model": "other"},
        {**REQUEST, "temperature": 0.5},
        {**REQUEST, "max_tokens": 51},
        {**REQUEST, "tools": []},
        {**REQUEST, "response_format": {"type": "text"}},
        {**REQUEST, "messages": [*REQUEST["messages"][:1], {"role": "user", "content": "Say hello!"}]},
        {**REQUEST, "seed": 1},
    ]
    keys = {request_key(variant, "ns") for variant in variants}
    assert len(keys) == len(variants) and key not in keys
    assert request_key(REQUEST, "other-namespace") != key


def test_idempotency_fingerprint_ignores_only_streaming() -> None:
    base = fingerprint(REQUEST)
    assert fingerprint({**REQUEST, "stream": True, "stream_options": {"include_usage": True}}) == base
    assert fingerprint(_reversed(REQUEST)) == base
    assert fingerprint({**REQUEST, "user": "someone-else"}) != base


def test_semantic_context_leaves_out_only_the_last_user_turn() -> None:
    asked_otherwise = {**REQUEST, "messages": [REQUEST["messages"][0], {"role": "user", "content": "Greet me"}]}
    assert context_key(asked_otherwise, "ns", "full") == context_key(REQUEST, "ns", "full")
    other_system = {**REQUEST, "messages": [{"role": "system", "content": "Be verbose."}, REQUEST["messages"][1]]}
    assert context_key(other_system, "ns", "full") != context_key(REQUEST, "ns", "full")
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    longer = {**REQUEST, "messages": [REQUEST["messages"][0], *history, REQUEST["messages"][1]]}
    assert context_key(longer, "ns", "full") != context_key(REQUEST, "ns", "full")
    assert context_key(longer, "ns", "system_and_tools") == context_key(REQUEST, "ns", "system_and_tools")


def test_prompt_text_is_the_last_user_turn_and_only_text() -> None:
    assert prompt_text(REQUEST) == "Say hello"
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert prompt_text({"messages": [parts]}) == "a\nb"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert prompt_text({"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}]}) is None
