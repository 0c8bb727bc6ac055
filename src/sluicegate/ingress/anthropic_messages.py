"""Anthropic's Messages API as an ingress dialect: request in, message or event stream out.

Pure converters, no I/O. An Anthropic request becomes the gateway's internal OpenAI chat request, so it is
routed, cached, limited and guarded exactly like a `/v1/chat/completions` call, to any provider. The OpenAI
answer is then turned back into an Anthropic `message`, or the OpenAI chunk stream into Anthropic's events.

What does not survive the trip, and why:

- `thinking` becomes `reasoning_effort` (the internal model has levels, not budgets): a budget below 4096
  tokens is `low`, below 16384 `medium`, above that `high`. Rounding down keeps `budget < max_tokens` true
  when the request is sent on to Anthropic. Thinking blocks sent back on assistant turns are dropped: the
  internal model has no field for their signature.
- `top_k` is dropped: OpenAI's API rejects it, and an alias may fail over to any provider.
- A `tool_result` with `is_error` is sent as text prefixed with `[tool error]`, since OpenAI tool messages
  have no error flag; images inside a tool result follow as a user message.
- Server tools (web search, code execution, ...) and `container`/`mcp_servers` are refused: the gateway only
  routes model calls.
- `stop_reason` is never `stop_sequence`: OpenAI does not say which stop sequence matched, so it is
  `end_turn`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from sluicegate.errors import GatewayError, InvalidRequestError
from sluicegate.streaming.sse import frame

#: the inverse of the Anthropic provider's THINKING_BUDGETS (1024 / 4096 / 16384), rounding down
_EFFORT_THRESHOLDS = ((16384, "high"), (4096, "medium"), (0, "low"))
#: Anthropic's `output_config.effort` levels above OpenAI's highest
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}

_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: count_tokens estimate: characters per token for text, and a flat cost per image (Anthropic's largest image
#: without resizing is ~1600 tokens); see `count_tokens`
_CHARS_PER_TOKEN = 4
_IMAGE_TOKENS = 1600

Message = dict[str, Any]


# --- request -----------------------------------------------------------------------------------------


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The internal OpenAI chat request for an Anthropic Messages request. Never mutates `body`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequestError("max_tokens: a positive integer is required", param="max_tokens")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise InvalidRequestError("messages: at least one message is required", param="messages")
    for name in ("container", "mcp_servers"):
        if body.get(name):
            raise InvalidRequestError(f"{name} is not supported by the gateway", param=name)

    messages: list[Message] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_content(system, "system")})
    for index, turn in enumerate(turns):
        messages.extend(_convert_turn(turn, f"messages[{index}]"))

    request: dict[str, Any] = {"model": model, "messages": messages}
    effort = reasoning_effort(body)
    if effort is not None:
        # Reasoning models take only max_completion_tokens; others know max_tokens best.
        request["reasoning_effort"] = effort
        request["max_completion_tokens"] = max_tokens
    else:
        request["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        request["user"] = user
    request.update(_tools(body))
    response_format = _response_format(body.get("output_config"))
    if response_format is not None:
        request["response_format"] = response_format
    if body.get("stream"):
        # Anthropic's closing message_delta carries the usage, so the gateway always asks for it.
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def reasoning_effort(body: dict[str, Any]) -> str | None:
    """OpenAI's `reasoning_effort` for Anthropic's `thinking` and `output_config.effort`."""
    effort = (body.get("output_config") or {}).get("effort")
    thinking = body.get("thinking") or {}
    kind = thinking.get("type")
    if kind == "disabled":
        return None
    if effort:
        if effort not in _EFFORTS:
            raise InvalidRequestError(f"output_config.effort '{effort}' is not supported", param="output_config")
        return _EFFORTS[effort]
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1:
            raise InvalidRequestError("thinking.budget_tokens must be a positive integer", param="thinking")
        return effort_for_budget(budget)
    if kind == "adaptive":
        return "medium"
    return None


def effort_for_budget(budget: int) -> str:
    return next(level for threshold, level in _EFFORT_THRESHOLDS if budget >= threshold)


def _convert_turn(turn: Any, where: str) -> list[Message]:
    if not isinstance(turn, dict):
        raise InvalidRequestError(f"{where} must be an object", param=where)
    role = turn.get("role")
    content = turn.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of blocks", param=f"{where}.content")
    if role == "user":
        return _user_messages(blocks, where)
    if role == "assistant":
        return [_assistant_message(blocks, where)]
    raise InvalidRequestError(f"{where}.role must be 'user' or 'assistant'", param=f"{where}.role")


def _user_messages(blocks: list[Any], where: str) -> list[Message]:
    """Tool results become tool messages, which OpenAI wants right after the assistant's calls, then the rest."""
    tool_messages: list[Message] = []
    parts: list[dict[str, Any]] = []
    for number, block in enumerate(blocks):
        place = f"{where}.content[{number}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            message, images = _tool_result(block, place)
            tool_messages.append(message)
            parts.extend(images)
        else:
            parts.append(_user_part(block, place))
    messages = tool_messages
    if parts:
        messages.append({"role": "user", "content": _collapse(parts)})
    return messages


def _user_part(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise InvalidRequestError(f"{where} must be a content block", param=where)
    kind = block.get("type")
    part: dict[str, Any]
    if kind == "text":
        part = {"type": "text", "text": block.get("text") or ""}
    elif kind == "image":
        part = {"type": "image_url", "image_url": {"url": _source_url(block.get("source"), where)}}
    elif kind == "document":
        part = _document(block, where)
    else:
        raise InvalidRequestError(f"{where}: content of type '{kind}' is not supported by the gateway", param=where)
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _source_url(source: Any, where: str) -> str:
    source = source or {}
    kind = source.get("type")
    if kind == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if kind == "url" and source.get("url"):
        return str(source["url"])
    raise InvalidRequestError(f"{where}.source: only base64 and url sources are supported", param=f"{where}.source")


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if source.get("type") == "base64":
        filename = block.get("title") or "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": _source_url(source, where)}}
    raise InvalidRequestError(f"{where}.source: documents must be base64 or text", param=f"{where}.source")


def _tool_result(block: dict[str, Any], where: str) -> tuple[Message, list[dict[str, Any]]]:
    tool_use_id = block.get("tool_use_id")
    if not tool_use_id:
        raise InvalidRequestError(f"{where}.tool_use_id: Field required", param=f"{where}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    for number, item in enumerate(content if isinstance(content, list) else []):
        part = _user_part(item, f"{where}.content[{number}]")
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            images.append(part)
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"[tool error] {text}"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _assistant_message(blocks: list[Any], where: str) -> Message:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for number, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = msgspec.json.encode(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind not in ("thinking", "redacted_thinking"):
            place = f"{where}.content[{number}]"
            raise InvalidRequestError(f"{place}: content of type '{kind}' is not supported by the gateway", param=place)
    message: Message = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _text_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where} must be a string or a list of text blocks", param=where)
    parts = []
    for number, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequestError(f"{where}[{number}] must be a text block", param=f"{where}[{number}]")
        part: dict[str, Any] = {"type": "text", "text": block.get("text") or ""}
        if block.get("cache_control"):
            part["cache_control"] = block["cache_control"]
        parts.append(part)
    return _collapse(parts)


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # One plain text block as a string: what every OpenAI-compatible server accepts.
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    if not tools:
        return {}
    converted = []
    for index, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequestError(
                f"tools[{index}]: server tools ('{tool.get('type')}') are not supported by the gateway; "
                "define a client tool with an input_schema instead",
                param=f"tools[{index}]",
            )
        function: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        converted.append({"type": "function", "function": function})
    request: dict[str, Any] = {"tools": converted}
    choice = body.get("tool_choice")
    if choice:
        kind = choice.get("type")
        if kind == "tool":
            request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in _TOOL_CHOICES:
            request["tool_choice"] = _TOOL_CHOICES[kind]
        else:
            raise InvalidRequestError(f"tool_choice type '{kind}' is not supported", param="tool_choice")
        if choice.get("disable_parallel_tool_use"):
            request["parallel_tool_calls"] = False
    return request


def _response_format(output_config: dict[str, Any] | None) -> dict[str, Any] | None:
    output_format = (output_config or {}).get("format")
    if not output_format:
        return None
    if output_format.get("type") != "json_schema":
        raise InvalidRequestError("output_config.format must be of type json_schema", param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": output_format.get("schema") or {}}}


# --- count_tokens ----------------------------------------------------------------------------------


def count_tokens(body: dict[str, Any]) -> dict[str, int]:
    """An estimate of `input_tokens` for `/v1/messages/count_tokens`.

    The gateway routes to many providers with different tokenizers and ships none (they are model
    data), so this is ~4 characters per token over the text, tool definitions and tool calls, plus a flat
    cost per image or document. Good enough for context-window bookkeeping, not for billing.
    """
    request = chat_request({"max_tokens": 1, **body})
    characters = 0
    attachments = 0
    for message in request["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            characters += len(content)
        for part in content if isinstance(content, list) else []:
            if part["type"] == "text":
                characters += len(part["text"])
            else:
                attachments += 1
        for call in message.get("tool_calls") or []:
            characters += len(call["function"]["name"] or "") + len(call["function"]["arguments"])
    for tool in request.get("tools") or []:
        characters += len(msgspec.json.encode(tool["function"]))
    return {"input_tokens": math.ceil(characters / _CHARS_PER_TOKEN) + attachments * _IMAGE_TOKENS}


# --- response ------------------------------------------------------------------------------------


def message_response(completion: dict[str, Any], model: str) -> Message:
    """The Anthropic `message` for an OpenAI `chat.completion`."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = reply.get("reasoning_content") or reply.get("reasoning")
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text_of(reply.get("content")) or reply.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": _tool_input(function)}
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage") or {}),
    }


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content or ""


def _tool_input(function: dict[str, Any]) -> Any:
    arguments = function.get("arguments") or "{}"
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        # A model wrote broken JSON; keep the text where the client can see it rather than losing it.
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def message_id(completion_id: str | None) -> str:
    raw = (completion_id or "").removeprefix("chatcmpl-")
    return raw if raw.startswith("msg_") else f"msg_{raw or 'sluicegate'}"


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI counts them inside."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or 0
    written = prompt_details.get("cache_creation_tokens") or 0
    result: dict[str, Any] = {
        "input_tokens": max((usage.get("prompt_tokens") or 0) - cached - written, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning:
        result["output_tokens_details"] = {"thinking_tokens": reasoning}
    return result


def error_body(error: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape, so the anthropic SDK raises the matching exception class."""
    kind = _ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_event(error: GatewayError) -> bytes:
    return frame(msgspec.json.encode(error_body(error)), "error")


# --- stream --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    index: int
    kind: str


class StreamEncoder:
    """OpenAI chunks in, Anthropic SSE events out: message_start, content blocks, message_delta, message_stop.

    OpenAI streams flat deltas; Anthropic streams typed content blocks, one open at a time, so a change of
    kind (thinking, text, a new tool call) closes the open block and starts the next. Tool-call argument
    pieces become `input_json_delta` events of their tool's block.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._blocks = 0
        self._open: _Block | None = None
        #: OpenAI tool-call index -> the Anthropic block carrying it
        self._tools: dict[int, _Block] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bytes:
        data: dict[str, Any] = msgspec.json.decode(chunk)
        events: list[bytes] = []
        if not self._started:
            self._started = True
            events.append(self._message_start(data))
        if data.get("usage"):
            self._usage = data["usage"]
        for choice in data.get("choices") or []:
            if choice.get("index", 0) == 0:
                self._choice_events(choice, events)
        return b"".join(events)

    def finish(self) -> bytes:
        events: list[bytes] = []
        self._close(events)
        delta = {"stop_reason": stop_reason(self._finish_reason), "stop_sequence": None}
        usage = anthropic_usage(self._usage)
        events.append(_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(events)

    def _message_start(self, data: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {
            "id": message_id(data.get("id")),
            "type": "message",
            "role": "assistant",
            "model": data.get("model") or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The OpenAI stream reports usage only at its end: the totals follow in message_delta.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _choice_events(self, choice: dict[str, Any], events: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            block = self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}, events)
            events.append(_delta(block, {"type": "thinking_delta", "thinking": reasoning}))
        text = _text_of(delta.get("content")) or delta.get("refusal")
        if text:
            block = self._ensure("text", {"type": "text", "text": ""}, events)
            events.append(_delta(block, {"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            self._tool_call(call, events)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]

    def _tool_call(self, call: dict[str, Any], events: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        block = self._tools.get(position)
        if block is None:
            start: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{position}",
                "name": function.get("name") or "",
                "input": {},
            }
            block = self._start("tool_use", start, events)
            self._tools[position] = block
        if function.get("arguments"):
            # Deltas for a tool whose block was already closed still name its index: clients assemble by index.
            events.append(_delta(block, {"type": "input_json_delta", "partial_json": function["arguments"]}))

    def _ensure(self, kind: str, start: dict[str, Any], events: list[bytes]) -> _Block:
        if self._open is not None and self._open.kind == kind:
            return self._open
        return self._start(kind, start, events)

    def _start(self, kind: str, start: dict[str, Any], events: list[bytes]) -> _Block:
        self._close(events)
        block = _Block(self._blocks, kind)
        self._blocks += 1
        self._open = block
        events.append(
            _event("content_block_start", {"type": "content_block_start", "index": block.index, "content_block": start})
        )
        return block

    def _close(self, events: list[bytes]) -> None:
        if self._open is not None:
            events.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._open.index}))
            self._open = None


def _delta(block: _Block, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": block.index, "delta": delta})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return frame(msgspec.json.encode(data), name)
