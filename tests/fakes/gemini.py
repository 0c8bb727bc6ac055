"""A fake Gemini (Generative Language API v1beta) speaking the real wire format.

Deterministic answers: a function call for the first declared function when the last turn is the user's
own text, otherwise the text "Hello from fake Gemini.", streamed as one SSE event per piece. Embeddings
are vectors derived from a hash of the text. Like the real API it rejects requests without a key and
malformed `contents`, so a converter bug shows up as a 400 here rather than only in production.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from .server import FakeProvider, Fault, Handler, send_sse

TEXT_PIECES = ("Hello", " from", " fake", " Gemini.")
EMBEDDING_SIZE = 8
#: usage the fake reports; thoughts are counted apart from candidates as Gemini's thinking models do
CANDIDATES_TOKENS = 5
THOUGHTS_TOKENS = 3

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MODEL = "{model:[^/:]+}"


class FakeGemini(FakeProvider):
    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", f"/v1beta/models/{_MODEL}:generateContent", _generate),
            ("POST", f"/v1beta/models/{_MODEL}:streamGenerateContent", _stream_generate),
            ("POST", f"/v1beta/models/{_MODEL}:batchEmbedContents", _batch_embed),
            ("POST", f"/v1beta/models/{_MODEL}:embedContent", _embed),
        ]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}


# --- handlers -------------------------------------------------------------------------------------


async def _generate(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = _check(request, body)
    if problem is not None:
        return _error(fake, *problem)
    return web.json_response(_combine(_answer_events(body, request.match_info["model"])))


async def _stream_generate(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = _check(request, body)
    if problem is not None:
        return _error(fake, *problem)
    events = _answer_events(body, request.match_info["model"])
    if request.query.get("alt") != "sse":
        # Without alt=sse the real API streams one JSON array; the gateway must never ask for that.
        return web.json_response(events)
    error_event = (None, fake.error_response(500, "injected in-stream error"))
    return await send_sse(request, [(None, event) for event in events], fault, error_event)


async def _batch_embed(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = _check_key(request)
    if problem is not None:
        return _error(fake, *problem)
    requests = body.get("requests") if isinstance(body, dict) else None
    if not requests:
        return _error(fake, 400, "requests must not be empty")
    expected = f"models/{request.match_info['model']}"
    embeddings = []
    for index, item in enumerate(requests):
        if item.get("model") != expected:
            return _error(fake, 400, f"requests[{index}].model must be {expected}")
        embeddings.append({"values": _vector(item)})
    return web.json_response({"embeddings": embeddings})


async def _embed(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = _check_key(request)
    if problem is not None:
        return _error(fake, *problem)
    return web.json_response({"embedding": {"values": _vector(body)}})


# --- validation -----------------------------------------------------------------------------------


def _check_key(request: web.Request) -> tuple[int, str] | None:
    if not request.headers.get("x-goog-api-key"):
        return 403, "Method doesn't allow unregistered callers. Please use an API key."
    return None


def _check(request: web.Request, body: Any) -> tuple[int, str] | None:
    """The structural rules the real API enforces on `contents` with a 400."""
    problem = _check_key(request)
    if problem is not None:
        return problem
    contents = body.get("contents") if isinstance(body, dict) else None
    if not contents:
        return 400, "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return 400, f"* GenerateContentRequest.contents[{index}].role: must be user or model"
        if not content.get("parts"):
            return 400, f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty"
    return None


def _error(fake: FakeProvider, status: int, message: str) -> web.Response:
    return web.json_response(fake.error_response(status, message), status=status)


# --- answers --------------------------------------------------------------------------------------


def _answer_events(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The answer as the stream of GenerateContentResponse events; non-streaming combines them."""
    call = _function_call(body)
    if call is not None:
        pieces: list[dict[str, Any]] = [{"functionCall": call}]
    else:
        pieces = [{"text": piece} for piece in TEXT_PIECES]
    events = [_event([piece], model) for piece in pieces]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    events[-1]["usageMetadata"] = _usage(body)
    return events


def _event(parts: list[dict[str, Any]], model: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
        "modelVersion": model,
        "responseId": "fake-response-1",
    }


def _combine(events: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [part for event in events for part in event["candidates"][0]["content"]["parts"]]
    text = "".join(part.get("text", "") for part in parts)
    merged = [{"text": text}] if text else parts
    answer = _event(merged, events[-1]["modelVersion"])
    answer["candidates"][0]["finishReason"] = "STOP"
    answer["usageMetadata"] = events[-1]["usageMetadata"]
    return answer


def _function_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """A call to the first declared function, when the user just spoke (not when a tool answered)."""
    declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
    last = body["contents"][-1]
    user_spoke = last["role"] == "user" and not any("functionResponse" in part for part in last["parts"])
    if not declarations or not user_spoke:
        return None
    first = declarations[0]
    has_city = "city" in ((first.get("parameters") or {}).get("properties") or {})
    return {"name": first["name"], "args": {"city": "Paris"} if has_city else {}}


def _usage(body: dict[str, Any]) -> dict[str, int]:
    words = sum(len(part.get("text", "").split()) for content in body["contents"] for part in content["parts"])
    prompt = max(words, 1)
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": CANDIDATES_TOKENS,
        "thoughtsTokenCount": THOUGHTS_TOKENS,
        "totalTokenCount": prompt + CANDIDATES_TOKENS + THOUGHTS_TOKENS,
    }


def _vector(item: dict[str, Any]) -> list[float]:
    text = "".join(part.get("text", "") for part in (item.get("content") or {}).get("parts") or [])
    size = item.get("outputDimensionality") or EMBEDDING_SIZE
    digest = hashlib.sha256(text.encode()).digest()
    # Map bytes to [-1, 1] and cycle the digest for sizes beyond 32; rounded so JSON round trips exactly.
    return [round(digest[i % len(digest)] / 127.5 - 1.0, 6) for i in range(size)]


def expected_vector(text: str, size: int = EMBEDDING_SIZE) -> list[float]:
    """What the fake answers for `text`, so tests can check order and values."""
    return _vector({"content": {"parts": [{"text": text}]}, "outputDimensionality": size})
