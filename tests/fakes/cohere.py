"""A fake Cohere v2 API (chat JSON and SSE, embed, rerank) in Cohere's wire format, deterministic answers.

Chat answers a tool call of the first tool when the last turn is the user's and tools are offered, otherwise
"Hello from fake Cohere.", streamed word by word with Cohere's typed events. Rerank scores each document by
how many query words it contains. Like the real API it wants a bearer key, refuses OpenAI-only field names
a converter could leak (`top_p`, `stop`, `max_completion_tokens`, `n`), and needs `input_type` on embed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeProvider, Fault, Handler, send_sse

TEXT = "Hello from fake Cohere."
INPUT_TOKENS = 17
OUTPUT_TOKENS = 5
_OPENAI_ONLY = ("top_p", "stop", "max_completion_tokens", "n", "reasoning_effort")

Event = tuple[str | None, Any]


class FakeCohere(FakeProvider):
    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", "/v2/chat", _chat), ("POST", "/v2/embed", _embed), ("POST", "/v2/rerank", _rerank)]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        return {"id": "err", "message": message}


def _unauthorized(request: web.Request) -> web.Response | None:
    if not request.headers.get("authorization", "").startswith("Bearer "):
        return web.json_response({"message": "no api key supplied"}, status=401)
    return None


async def _chat(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    leaked = [name for name in _OPENAI_ONLY if name in body]
    if leaked or not body.get("messages"):
        return web.json_response({"message": f"invalid request: unknown field(s) {leaked}"}, status=400)
    answer = _answer(body)
    if not body.get("stream"):
        return web.json_response(answer)
    error = (
        "message-end",
        {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "injected stream error"}},
    )
    return await send_sse(request, stream_events(answer), fault, error)


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    last = body["messages"][-1]
    tools = body.get("tools") or []
    message: dict[str, Any] = {"role": "assistant"}
    if tools and last["role"] == "user":
        function = tools[0]["function"]
        has_city = "city" in ((function.get("parameters") or {}).get("properties") or {})
        arguments = json.dumps({"city": "Paris"} if has_city else {})
        message["tool_plan"] = "I will call the tool."
        message["tool_calls"] = [
            {"id": "cohere_call_1", "type": "function", "function": {"name": function["name"], "arguments": arguments}}
        ]
        finish = "TOOL_CALL"
    else:
        content: list[dict[str, Any]] = []
        if (body.get("thinking") or {}).get("type") == "enabled":
            content.append({"type": "thinking", "thinking": "Let me think."})
        content.append({"type": "text", "text": TEXT})
        message["content"] = content
        finish = "COMPLETE"
    usage = {
        "billed_units": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        "tokens": {"input_tokens": INPUT_TOKENS + 100, "output_tokens": OUTPUT_TOKENS},
    }
    return {"id": "cohere-msg-1", "finish_reason": finish, "message": message, "usage": usage}


def stream_events(answer: dict[str, Any]) -> list[Event]:
    message = answer["message"]
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[Event] = [
        ("message-start", {"type": "message-start", "id": answer["id"], "delta": {"message": start}})
    ]
    for index, part in enumerate(message.get("content") or []):
        kind = part["type"]
        events.append(
            (
                "content-start",
                {"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}},
            )
        )
        pieces = part[kind].split(" ")
        for number, piece in enumerate(pieces):
            text = piece if number == len(pieces) - 1 else piece + " "
            events.append(
                (
                    "content-delta",
                    {"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: text}}}},
                )
            )
        events.append(("content-end", {"type": "content-end", "index": index}))
    if message.get("tool_plan"):
        events.append(
            ("tool-plan-delta", {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": message["tool_plan"]}}})
        )
    for index, call in enumerate(message.get("tool_calls") or []):
        opening = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(
            (
                "tool-call-start",
                {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": opening}}},
            )
        )
        arguments = call["function"]["arguments"]
        for at in range(0, len(arguments), 5):
            piece = {"tool_calls": {"function": {"arguments": arguments[at : at + 5]}}}
            events.append(("tool-call-delta", {"type": "tool-call-delta", "index": index, "delta": {"message": piece}}))
        events.append(("tool-call-end", {"type": "tool-call-end", "index": index}))
    end = {"finish_reason": answer["finish_reason"], "usage": answer["usage"]}
    events.append(("message-end", {"type": "message-end", "delta": end}))
    return events


async def _embed(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    if not body.get("input_type") or body.get("embedding_types") != ["float"]:
        return web.json_response({"message": "input_type and embedding_types are required"}, status=400)
    size = body.get("output_dimension") or 4
    vectors = [vector(text, size) for text in body["texts"]]
    meta = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3 * len(body["texts"])}}
    return web.json_response(
        {
            "id": "emb-1",
            "embeddings": {"float": vectors},
            "texts": body["texts"],
            "meta": meta,
            "response_type": "embeddings_by_type",
        }
    )


def vector(text: str, size: int = 4) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(size)]


async def _rerank(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    if not all(isinstance(doc, str) for doc in body.get("documents") or [None]):
        return web.json_response({"message": "documents must be a list of strings"}, status=400)
    words = set(body["query"].lower().split())
    scored = [
        {"index": index, "relevance_score": round(len(words & set(doc.lower().split())) / max(len(words), 1), 4)}
        for index, doc in enumerate(body["documents"])
    ]
    scored.sort(key=lambda item: (-item["relevance_score"], item["index"]))
    if body.get("top_n"):
        scored = scored[: body["top_n"]]
    return web.json_response({"id": "rerank-1", "results": scored, "meta": {"billed_units": {"search_units": 1}}})
