"""Pure converters between OpenAI chat completions and Anthropic's Messages API.

No I/O and no side effects, so each is tested with plain input/output pairs.

Where Anthropic has no equivalent, the gateway emulates or drops, and says so here:

- `response_format` (`json_object`, `json_schema`) is emulated by an instruction appended to the system
  prompt. Nothing checks the answer against the schema, and the model may still add prose around the JSON.
- `n` > 1 is refused: Anthropic returns one answer per request.
- `temperature` is clamped to Anthropic's 0..1 (OpenAI allows 0..2), so one request can fail over between
  providers unchanged.
- `reasoning_effort` turns on extended thinking with a fixed token budget per level; thinking comes back as
  `reasoning_content`. Thinking sent back on assistant turns is dropped: Anthropic needs the block's
  signature, which the OpenAI format has no field for.
- `cache_control` on an OpenAI content part is copied onto the Anthropic block, the convention OpenAI-format
  clients use to ask for prompt caching.
- `logprobs`, `logit_bias`, `presence_penalty`, `frequency_penalty`, `seed` and the other OpenAI-only fields
  are ignored.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError
from sluicegate.providers.base import Usage

#: Anthropic requires `max_tokens`; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096

#: thinking budget per OpenAI `reasoning_effort`; Anthropic's minimum budget is 1024 tokens
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else: no prose, no code fences."
JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single valid JSON value that conforms to this JSON Schema, and nothing else: "
    "no prose, no code fences.\nSchema: "
)

_TOOL_CHOICES: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # The model paused a long server-side tool turn; to the client the answer is complete as it stands.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

Block = dict[str, Any]


# --- request ---------------------------------------------------------------------------------------


def chat_request(request: dict[str, Any], model: str, *, stream: bool = False) -> dict[str, Any]:
    """The Anthropic Messages body for an OpenAI chat request. Never mutates `request`."""
    if (request.get("n") or 1) > 1:
        raise InvalidRequestError("Anthropic returns one choice per request: `n` must be 1", param="n")
    system, messages = convert_messages(request.get("messages") or [])
    system.extend(_response_format_instruction(request.get("response_format")))
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(request), "messages": messages}
    if system:
        body["system"] = system
    body.update(_sampling(request))
    body.update(_tools(request))
    body.update(_thinking(request, body["max_tokens"]))
    if stream:
        body["stream"] = True
    return body


def convert_messages(messages: list[dict[str, Any]]) -> tuple[list[Block], list[dict[str, Any]]]:
    """System blocks and strictly alternating user/assistant turns.

    Anthropic takes the system prompt apart from the turns and rejects two turns in a row from the same
    role, so system/developer messages are hoisted and consecutive same-role turns merged (tool results
    become user turns, which is how several results in a row end up in one turn).
    """
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content"), where))
            continue
        role, blocks = _turn(message, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _system_blocks(content: Any, where: str) -> list[Block]:
    blocks = _content_blocks(content, where)
    if any(block["type"] != "text" for block in blocks):
        raise InvalidRequestError(f"{where}: a system message may only contain text", param=f"{where}.content")
    return blocks


def _turn(message: dict[str, Any], where: str) -> tuple[str, list[Block]]:
    role = message.get("role")
    if role == "user":
        return "user", _content_blocks(message.get("content"), where)
    if role == "assistant":
        blocks = _content_blocks(message.get("content"), where)
        for number, call in enumerate(message.get("tool_calls") or []):
            blocks.append(_tool_use(call, f"{where}.tool_calls[{number}]"))
        return "assistant", blocks
    if role == "tool":
        return "user", [_tool_result(message, where)]
    raise InvalidRequestError(f"{where}: the role '{role}' is not supported by Anthropic", param=f"{where}.role")


def _content_blocks(content: Any, where: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        # Anthropic rejects empty text blocks, which OpenAI clients send freely (e.g. next to tool calls).
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for number, part in enumerate(content):
        block = _content_block(part, f"{where}.content[{number}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _content_block(part: dict[str, Any], where: str) -> Block | None:
    kind = part.get("type")
    block: Block
    if kind in ("text", "refusal"):
        text = part.get(kind) or ""
        if not text:
            return None
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        image = part.get("image_url") or {}
        url = image if isinstance(image, str) else image.get("url", "")
        block = {"type": "image", "source": image_source(url, where)}
    else:
        raise InvalidRequestError(f"{where}: content of type '{kind}' is not supported by Anthropic", param=where)
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def image_source(url: str, where: str = "image_url") -> Block:
    """An Anthropic image source from an OpenAI image URL: inline base64 for data: URLs, else by URL."""
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not media_type:
            raise InvalidRequestError(
                f"{where}: a data: URL image must look like data:image/png;base64,<data>", param=where
            )
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequestError(f"{where}: an image URL must be http(s) or a base64 data: URL", param=where)


def _tool_use(call: dict[str, Any], where: str) -> Block:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = msgspec.json.decode(arguments)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            f"{where}.function.arguments is not valid JSON ({exc}); Anthropic needs the tool input as an object",
            param=f"{where}.function.arguments",
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(
            f"{where}.function.arguments must be a JSON object for Anthropic, got {type(parsed).__name__}",
            param=f"{where}.function.arguments",
        )
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _tool_result(message: dict[str, Any], where: str) -> Block:
    tool_call_id = message.get("tool_call_id")
    if not tool_call_id:
        raise InvalidRequestError(f"{where}: a tool message needs a tool_call_id", param=f"{where}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        block["content"] = _content_blocks(content, where)
    return block


def _max_tokens(request: dict[str, Any]) -> int:
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    if value:
        return int(value)
    effort_budget = THINKING_BUDGETS.get(request.get("reasoning_effort") or "", 0)
    # OpenAI counts reasoning inside the completion limit, Anthropic counts thinking inside max_tokens:
    # without a limit from the client, leave the default room for the answer after the thinking.
    return DEFAULT_MAX_TOKENS + effort_budget


def _sampling(request: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    temperature = request.get("temperature")
    if temperature is not None:
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if request.get("top_p") is not None:
        body["top_p"] = request["top_p"]
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.get("user"):
        body["metadata"] = {"user_id": request["user"]}
    return body


def _tools(request: dict[str, Any]) -> dict[str, Any]:
    tools = request.get("tools")
    if not tools:
        # Anthropic rejects tool_choice without tools; OpenAI ignores it.
        return {}
    body: dict[str, Any] = {"tools": [_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]}
    choice = tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
    if choice is not None:
        body["tool_choice"] = choice
    return body


def _tool(tool: dict[str, Any], where: str) -> Block:
    if tool.get("type") != "function":
        raise InvalidRequestError(f"{where}: only function tools are supported by Anthropic", param=f"{where}.type")
    function = tool.get("function") or {}
    converted: Block = {"name": function.get("name")}
    if function.get("description"):
        converted["description"] = function["description"]
    converted["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return converted


def tool_choice(choice: Any, parallel_tool_calls: bool | None = None) -> dict[str, Any] | None:
    """Anthropic's `tool_choice` for OpenAI's `tool_choice` and `parallel_tool_calls`; None to leave it out."""
    converted: dict[str, Any] | None
    if choice is None:
        converted = None
    elif isinstance(choice, str) and choice in _TOOL_CHOICES:
        converted = dict(_TOOL_CHOICES[choice])
    elif isinstance(choice, dict) and choice.get("type") == "function":
        converted = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported by Anthropic", param="tool_choice")
    if parallel_tool_calls is False and (converted is None or converted["type"] != "none"):
        # Anthropic carries the parallel switch inside tool_choice, and the OpenAI default choice is auto.
        converted = {**(converted or {"type": "auto"}), "disable_parallel_tool_use": True}
    return converted


def _response_format_instruction(response_format: dict[str, Any] | None) -> list[Block]:
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return []
    if kind == "json_object":
        return [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    if kind == "json_schema":
        schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {}
        return [{"type": "text", "text": JSON_SCHEMA_INSTRUCTION + msgspec.json.encode(schema).decode()}]
    raise InvalidRequestError(f"response_format type '{kind}' is not supported", param="response_format")


def _thinking(request: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    effort = request.get("reasoning_effort")
    budget = THINKING_BUDGETS.get(effort or "")
    if budget is None:
        # "none", "minimal" or absent: no extended thinking.
        return {}
    if max_tokens <= budget:
        raise InvalidRequestError(
            f"reasoning_effort '{effort}' uses {budget} thinking tokens on Anthropic, which count inside the "
            f"token limit: raise max_completion_tokens above {budget}",
            param="max_completion_tokens",
        )
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


# --- response --------------------------------------------------------------------------------------


def chat_response(message: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An OpenAI `chat.completion` for an Anthropic message. `created` defaults to now."""
    text: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
        elif kind == "tool_use":
            tool_calls.append(tool_call(block))
        # redacted_thinking and server-side tool blocks have no OpenAI counterpart.
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model") or "",
        "choices": [
            {"index": 0, "message": reply, "logprobs": None, "finish_reason": finish_reason(message.get("stop_reason"))}
        ],
        "usage": usage_from_anthropic(message.get("usage") or {}).to_openai(),
    }


def tool_call(block: Block) -> dict[str, Any]:
    arguments = msgspec.json.encode(block.get("input") or {}).decode()
    return {"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": arguments}}


def completion_id(message_id: str | None) -> str:
    return f"chatcmpl-{message_id or 'anthropic'}"


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's finish_reason for Anthropic's stop_reason; an unknown (newer) reason reads as a normal stop."""
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI counts them inside the prompt."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = usage.get("output_tokens") or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cache_read,
        cache_creation_tokens=cache_write,
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("thinking_tokens") or 0,
    )
