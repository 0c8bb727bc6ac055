"""Pure converters between OpenAI chat completions and Cohere's Chat API v2 (`POST /v2/chat`).

No I/O and no side effects, so each is tested with plain input/output pairs. Cohere v2 is close to OpenAI's
shape (roles, function tools, `tool_calls`, tool messages); what differs is renamed or emulated here:

- `top_p` is `p`, `stop` is `stop_sequences`, `max_completion_tokens` is `max_tokens`.
- `tool_choice` has only REQUIRED and NONE: a named function becomes REQUIRED with only that tool offered.
- `response_format` `json_schema` is `{"type": "json_object", "json_schema": ...}`.
- `reasoning_effort` becomes `thinking` with the Anthropic converter's budgets (`none`: thinking disabled);
  thinking comes back as `reasoning_content`.
- `n` > 1 is refused: Cohere returns one answer per request.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.anthropic.chat import THINKING_BUDGETS
from sluicegate.providers.base import Usage

_RENAMES = {
    "temperature": "temperature",
    "top_p": "p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}

_FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def chat_request(request: dict[str, Any], model: str, *, stream: bool = False) -> dict[str, Any]:
    """The Cohere v2 chat body for an OpenAI chat request. Never mutates `request`."""
    if (request.get("n") or 1) > 1:
        raise InvalidRequestError("Cohere returns one choice per request: `n` must be 1", param="n")
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m, f"messages[{i}]") for i, m in enumerate(request.get("messages") or [])],
    }
    body.update({cohere: request[openai] for openai, cohere in _RENAMES.items() if request.get(openai) is not None})
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens:
        body["max_tokens"] = max_tokens
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    body.update(_tools(request))
    response_format = _response_format(request.get("response_format"))
    if response_format:
        body["response_format"] = response_format
    effort = request.get("reasoning_effort")
    if effort in ("none", "minimal"):
        body["thinking"] = {"type": "disabled"}
    elif effort in THINKING_BUDGETS:
        body["thinking"] = {"type": "enabled", "token_budget": THINKING_BUDGETS[effort]}
    if stream:
        body["stream"] = True
    return body


def _message(message: dict[str, Any], where: str) -> dict[str, Any]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text(content)}
    if role == "user":
        return {"role": "user", "content": _user_content(content, where)}
    if role == "assistant":
        converted: dict[str, Any] = {"role": "assistant"}
        text = _text(content)
        if text:
            converted["content"] = text
        if message.get("tool_calls"):
            converted["tool_calls"] = [
                {"id": call.get("id"), "type": "function", "function": call.get("function") or {}}
                for call in message["tool_calls"]
            ]
        return converted
    if role == "tool":
        return {"role": "tool", "tool_call_id": message.get("tool_call_id"), "content": _text(content)}
    raise InvalidRequestError(f"{where}: the role '{role}' is not supported by Cohere", param=f"{where}.role")


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or part.get("refusal") or "" for part in content if isinstance(part, dict))
    return content or ""


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if not isinstance(content, list):
        return content or ""
    parts: list[dict[str, Any]] = []
    for number, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            place = f"{where}.content[{number}]"
            raise InvalidRequestError(f"{place}: content of type '{kind}' is not supported by Cohere", param=place)
    return parts


def _tools(request: dict[str, Any]) -> dict[str, Any]:
    tools = request.get("tools")
    choice = request.get("tool_choice")
    if not tools:
        return {}
    if choice == "none":
        return {"tools": tools, "tool_choice": "NONE"}
    if choice == "required":
        return {"tools": tools, "tool_choice": "REQUIRED"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        chosen = [tool for tool in tools if (tool.get("function") or {}).get("name") == name]
        if not chosen:
            raise InvalidRequestError(f"tool_choice names '{name}', which is not among the tools", param="tool_choice")
        return {"tools": chosen, "tool_choice": "REQUIRED"}
    if choice not in (None, "auto"):
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported by Cohere", param="tool_choice")
    return {"tools": tools}


def _response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert response_format is not None
        return {"type": "json_object", "json_schema": (response_format.get("json_schema") or {}).get("schema") or {}}
    raise InvalidRequestError(f"response_format type '{kind}' is not supported by Cohere", param="response_format")


# --- response ------------------------------------------------------------------------------------


def chat_response(answer: dict[str, Any], model: str, *, created: int | None = None) -> dict[str, Any]:
    """An OpenAI `chat.completion` for a Cohere v2 chat answer."""
    message = answer.get("message")
    if not isinstance(message, dict):
        raise UpstreamError("Cohere returned no message", code="upstream_malformed_response")
    text: list[str] = []
    reasoning: list[str] = []
    for part in message.get("content") or []:
        if part.get("type") == "thinking":
            reasoning.append(part.get("thinking") or "")
        elif part.get("type") == "text":
            text.append(part.get("text") or "")
    calls = [tool_call(call) for call in message.get("tool_calls") or []]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{answer.get('id') or 'cohere'}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(answer.get("finish_reason")),
            }
        ],
        "usage": usage(answer.get("usage") or {}).to_openai(),
    }


def tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": function.get("arguments") or "{}"},
    }


def finish_reason(reason: str | None) -> str:
    return _FINISH_REASONS.get(reason or "", "stop")


def usage(raw: dict[str, Any]) -> Usage:
    """Cohere reports the tokens the model saw (`tokens`) and the ones billed (`billed_units`); prefer the first."""
    counts = raw.get("tokens") or raw.get("billed_units") or {}
    prompt = int(counts.get("input_tokens") or 0)
    completion = int(counts.get("output_tokens") or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def decode(body: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("Cohere returned a malformed response", code="upstream_malformed_response")
    return data
