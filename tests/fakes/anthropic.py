"""A fake Anthropic Messages API: the real wire format (JSON and named SSE events), deterministic answers.

It answers a user turn with a call to the first tool when the request has tools, and with a fixed text
otherwise (after a tool result, say). It also refuses what the real API refuses and a converter could get
wrong (no max_tokens, turns that do not alternate, empty text, a tool_result that answers no tool_use),
so the end-to-end tests catch translation mistakes instead of trusting them.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeProvider, Fault, send_sse

TEXT = "Hello from fake Anthropic."
TOOL_INPUT = {"city": "Paris"}
INPUT_TOKENS = 21
OUTPUT_TOKENS = 9
#: reported as cache reads when the request asks for caching anywhere (`cache_control`)
CACHE_READ_TOKENS = 1000

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

Event = tuple[str | None, Any]


class FakeAnthropic(FakeProvider):
    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/v1/messages", _messages)]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        return error_body(_ERROR_TYPES.get(status, "api_error"), message)


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


async def _messages(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    if not request.headers.get("x-api-key"):
        return web.json_response(error_body("authentication_error", "x-api-key header is required"), status=401)
    problem = _invalid(request, body)
    if problem:
        return web.json_response(error_body("invalid_request_error", problem), status=400)
    message = answer(body, message_id=f"msg_fake{len(fake.requests):04d}")
    if body.get("stream"):
        overloaded = ("error", error_body("overloaded_error", "Overloaded"))
        return await send_sse(request, stream_events(message), fault, error_event=overloaded)
    return web.json_response(message)


def _invalid(request: web.Request, body: Any) -> str | None:
    """What the real API would answer 400 for, among the mistakes a converter can make."""
    if not request.headers.get("anthropic-version"):
        return "anthropic-version header is required"
    if not isinstance(body, dict) or not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_tool_uses: set[str] = set()
    for index, turn in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn.get("role") != expected:
            return f"messages: roles must alternate between user and assistant, starting with user (at {index})"
        for block in turn.get("content") if isinstance(turn.get("content"), list) else []:
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{index}: text content blocks must be non-empty"
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_tool_uses:
                return (
                    f"messages.{index}: tool_result block(s) provided without a matching tool_use in the previous turn"
                )
        previous_tool_uses = {b["id"] for b in _blocks(turn) if b.get("type") == "tool_use"}
    return None


def _blocks(turn: dict[str, Any]) -> list[dict[str, Any]]:
    content = turn.get("content")
    return content if isinstance(content, list) else []


def answer(body: dict[str, Any], message_id: str) -> dict[str, Any]:
    last = body["messages"][-1]
    answered_tool = any(block.get("type") == "tool_result" for block in _blocks(last))
    tools = body.get("tools") or []
    if tools and last["role"] == "user" and not answered_tool:
        content = [_tool_use(tools[0], message_id)]
        stop_reason = "tool_use"
    else:
        content = [{"type": "text", "text": TEXT}]
        stop_reason = "end_turn"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(body),
    }


def _tool_use(tool: dict[str, Any], message_id: str) -> dict[str, Any]:
    properties = (tool.get("input_schema") or {}).get("properties") or {}
    tool_input = dict(TOOL_INPUT) if "city" in properties else {}
    return {"type": "tool_use", "id": message_id.replace("msg_", "toolu_"), "name": tool["name"], "input": tool_input}


def _usage(body: dict[str, Any]) -> dict[str, Any]:
    cached = '"cache_control"' in json.dumps(body)
    return {
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHE_READ_TOKENS if cached else 0,
        "output_tokens": OUTPUT_TOKENS,
    }


def stream_events(message: dict[str, Any]) -> list[Event]:
    """The message as Anthropic streams it: text split on spaces, tool input in several JSON pieces."""
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    events: list[Event] = [("message_start", {"type": "message_start", "message": start}), ("ping", {"type": "ping"})]
    for index, block in enumerate(message["content"]):
        events.extend(_block_events(index, block))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": OUTPUT_TOKENS}})
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[Event]:
    opening: dict[str, Any]
    if block["type"] == "text":
        opening = {"type": "text", "text": ""}
        words = block["text"].split(" ")
        pieces = [word + " " for word in words[:-1]] + words[-1:]
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
    else:
        opening = {**block, "input": {}}
        arguments = json.dumps(block["input"], separators=(",", ":"))
        deltas = [
            {"type": "input_json_delta", "partial_json": arguments[i : i + 5]} for i in range(0, len(arguments), 5)
        ]
    events: list[Event] = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
    ]
    events.extend(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas)
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events
