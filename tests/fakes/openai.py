"""A fake OpenAI-compatible provider: chat completions (JSON and SSE) and embeddings, in OpenAI's wire format."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeProvider, Fault, Handler, send_sse

TEXT = "Hello from fake OpenAI."


class FakeOpenAI(FakeProvider):
    """Answers `TEXT`, or calls the first tool with {"city": "Paris"} when tools are offered to a user turn."""

    def __init__(self, text: str = TEXT) -> None:
        super().__init__()
        self.text = text

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/chat/completions", FakeOpenAI._chat),
            ("POST", "/v1/embeddings", FakeOpenAI._embeddings),
            ("POST", "/openai/deployments/{deployment}/chat/completions", FakeOpenAI._chat),
        ]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}.get(
            status, "server_error"
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    async def _chat(self, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
        model = body.get("model") or request.match_info.get("deployment", "unknown")
        message = _answer(body, self.text)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": _finish(message), "logprobs": None}],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [(None, chunk) for chunk in _chunks(model, message, usage if include_usage else None)]
        events.append((None, "[DONE]"))
        error = (None, {"error": {"message": "injected mid-stream failure", "type": "server_error", "code": None}})
        return await send_sse(request, events, fault, error)

    async def _embeddings(self, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or 4
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(text), dims)} for i, text in enumerate(inputs)
        ]
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 5, "total_tokens": 5}}
        )


def _answer(body: dict[str, Any], text: str) -> dict[str, Any]:
    messages = body.get("messages") or []
    if body.get("tools") and messages and messages[-1].get("role") == "user":
        tool = body["tools"][0]["function"]
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": '{"city": "Paris"}'},
                }
            ],
        }
    return {"role": "assistant", "content": text}


def _finish(message: dict[str, Any]) -> str:
    return "tool_calls" if message.get("tool_calls") else "stop"


def _chunks(model: str, message: dict[str, Any], usage: dict[str, Any] | None) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    extra = {"usage": None} if usage is not None else {}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        for start in range(0, len(arguments), 5):
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + 5]}}]})
    else:
        words = message["content"].split(" ")
        deltas.extend({"content": w if i == 0 else " " + w} for i, w in enumerate(words))
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}], **extra} for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(message)}], **extra})
    if usage is not None:
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 255 for i in range(dims)]


def as_json(value: Any) -> str:
    return json.dumps(value)
