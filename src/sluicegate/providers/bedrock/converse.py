"""Pure converters between OpenAI chat completions and Bedrock's Converse API.

No I/O and no side effects, so each is tested with plain input/output pairs. The stream translator
(`stream.py`) shares the answer-side helpers at the bottom.

Where Converse differs, the gateway emulates or refuses, and says so here:

- Images must be inline (`data:` URLs): Converse takes bytes or S3 locations, not web URLs.
- `tool_choice: "none"` sends no tools at all, since Converse has no "none" choice.
- `cache_control` on a content part becomes a `cachePoint` block after it, Bedrock's prompt-cache marker.
- `reasoning_effort` becomes Anthropic's `thinking` in `additionalModelRequestFields` for Claude models,
  with the Anthropic converter's budgets; other model families ignore it.
- `response_format` is emulated with an instruction in the system prompt, as for Anthropic.
- `n` > 1 is refused: Converse returns one answer per request.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.anthropic.chat import DEFAULT_MAX_TOKENS, THINKING_BUDGETS
from sluicegate.providers.base import Usage

JSON_INSTRUCTION = "Respond with a single valid JSON value and nothing else: no prose, no code fences."

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/html": "html",
    "text/markdown": "md",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.DOTALL)

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

#: the geography prefix of a cross-region inference profile, by the first part of the region name
_GEOGRAPHIES = {"us": "us", "eu": "eu", "ap": "apac", "ca": "ca", "sa": "sa", "me": "me", "af": "af", "il": "il"}
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|us-gov|ca|jp|au|global|sa|me|af|il)\.")

Block = dict[str, Any]
_CACHE_POINT: Block = {"cachePoint": {"type": "default"}}


# --- model ids ------------------------------------------------------------------------------------


def model_id(model: str, inference_profile: str | None, region: str) -> str:
    """The model id to call: with a cross-region inference profile prefix when one is configured.

    Ids that already carry a geography prefix, and ARNs (provisioned throughput, application profiles),
    are used as written.
    """
    if not inference_profile or model.startswith("arn:") or _PROFILE_PREFIX.match(model):
        return model
    geography = inference_profile
    if inference_profile == "auto":
        geography = "us-gov" if region.startswith("us-gov-") else _GEOGRAPHIES.get(region.split("-", 1)[0], "us")
    return f"{geography}.{model}"


def is_anthropic(model: str) -> bool:
    return "anthropic." in model or "claude" in model


# --- request -----------------------------------------------------------------------------------------


def converse_request(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The Converse body for an OpenAI chat request (the model id goes in the URL). Never mutates `request`."""
    if (request.get("n") or 1) > 1:
        raise InvalidRequestError("Bedrock returns one choice per request: `n` must be 1", param="n")
    system, messages = convert_messages(request.get("messages") or [])
    if (request.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        system.append({"text": _json_instruction(request["response_format"])})
    if not messages:
        raise InvalidRequestError("Bedrock needs at least one user or assistant message", param="messages")
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    body["inferenceConfig"] = _inference_config(request, model)
    tool_config = _tool_config(request)
    if tool_config:
        body["toolConfig"] = tool_config
    thinking = _thinking(request, model, body["inferenceConfig"]["maxTokens"])
    if thinking:
        body["additionalModelRequestFields"] = thinking
    return body


def convert_messages(messages: list[dict[str, Any]]) -> tuple[list[Block], list[dict[str, Any]]]:
    """System blocks and alternating user/assistant turns (tool results ride in user turns, merged)."""
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_content(message.get("content"), where, text_only=True))
            continue
        if role == "user":
            blocks = _content(message.get("content"), where)
        elif role == "assistant":
            blocks = _content(message.get("content"), where, text_only=True)
            blocks.extend(
                _tool_use(call, f"{where}.tool_calls[{n}]") for n, call in enumerate(message.get("tool_calls") or [])
            )
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise InvalidRequestError(f"{where}: the role '{role}' is not supported by Bedrock", param=f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _content(content: Any, where: str, *, text_only: bool = False) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        # Converse rejects blank text blocks, which OpenAI clients send next to tool calls.
        return [{"text": content}] if content else []
    blocks: list[Block] = []
    for number, part in enumerate(content):
        place = f"{where}.content[{number}]"
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind) or ""
            if text:
                blocks.append({"text": text})
        elif text_only:
            raise InvalidRequestError(f"{place}: only text is allowed here", param=place)
        elif kind == "image_url":
            image = part.get("image_url")
            blocks.append(_image(image.get("url") if isinstance(image, dict) else image, place))
        elif kind == "file":
            blocks.append(_document(part.get("file") or {}, place))
        else:
            raise InvalidRequestError(f"{place}: content of type '{kind}' is not supported by Bedrock", param=place)
        if part.get("cache_control") and blocks:
            blocks.append(dict(_CACHE_POINT))
    return blocks


def _inline(url: Any, place: str) -> tuple[str, str]:
    match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidRequestError(
            f"{place}: Bedrock needs images and files inline as base64 data: URLs (web URLs are not supported)",
            param=place,
        )
    return match["mime"], match["data"]


def _image(url: Any, place: str) -> Block:
    mime, data = _inline(url, place)
    if mime not in _IMAGE_FORMATS:
        raise InvalidRequestError(f"{place}: Bedrock does not take images of type {mime}", param=place)
    return {"image": {"format": _IMAGE_FORMATS[mime], "source": {"bytes": data}}}


def _document(file: dict[str, Any], place: str) -> Block:
    mime, data = _inline(file.get("file_data"), place)
    if mime not in _DOCUMENT_FORMATS:
        raise InvalidRequestError(f"{place}: Bedrock does not take documents of type {mime}", param=place)
    # Converse allows only letters, digits, spaces, hyphens, parentheses and brackets in a document name.
    name = re.sub(r"[^A-Za-z0-9 ()\[\]-]", "-", (file.get("filename") or "document").rsplit(".", 1)[0]) or "document"
    return {"document": {"format": _DOCUMENT_FORMATS[mime], "name": name, "source": {"bytes": data}}}


def _tool_use(call: dict[str, Any], where: str) -> Block:
    function = call.get("function") or {}
    try:
        arguments = msgspec.json.decode(function.get("arguments") or "{}")
    except msgspec.DecodeError:
        raise InvalidRequestError(
            f"{where}.function.arguments is not valid JSON; Bedrock needs the tool input as an object",
            param=f"{where}.function.arguments",
        ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(
            f"{where}.function.arguments must be a JSON object for Bedrock", param=f"{where}.function.arguments"
        )
    return {"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"), "input": arguments}}


def _tool_result(message: dict[str, Any], where: str) -> Block:
    tool_call_id = message.get("tool_call_id")
    if not tool_call_id:
        raise InvalidRequestError(f"{where}: a tool message needs a tool_call_id", param=f"{where}.tool_call_id")
    content = [block for block in _content(message.get("content"), where, text_only=True) if "text" in block]
    # A tool result needs some content; an empty one still tells the model the call finished.
    return {"toolResult": {"toolUseId": tool_call_id, "content": content or [{"text": ""}]}}


def _inference_config(request: dict[str, Any], model: str) -> dict[str, Any]:
    config: dict[str, Any] = {"maxTokens": _max_tokens(request, model)}
    if request.get("temperature") is not None:
        # Converse takes 0..1 for every model family; OpenAI allows 0..2.
        config["temperature"] = min(max(float(request["temperature"]), 0.0), 1.0)
    if request.get("top_p") is not None:
        config["topP"] = request["top_p"]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _max_tokens(request: dict[str, Any], model: str) -> int:
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    if value:
        return int(value)
    budget = THINKING_BUDGETS.get(request.get("reasoning_effort") or "", 0) if is_anthropic(model) else 0
    return DEFAULT_MAX_TOKENS + budget


def _tool_config(request: dict[str, Any]) -> dict[str, Any] | None:
    tools = request.get("tools")
    choice = request.get("tool_choice")
    if not tools or choice == "none":
        return None
    specs = []
    for index, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise InvalidRequestError(
                f"tools[{index}]: only function tools are supported by Bedrock", param=f"tools[{index}]"
            )
        function = tool.get("function") or {}
        spec: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name")}}
    elif choice is not None:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported by Bedrock", param="tool_choice")
    return config


def _thinking(request: dict[str, Any], model: str, max_tokens: int) -> dict[str, Any] | None:
    budget = THINKING_BUDGETS.get(request.get("reasoning_effort") or "")
    if budget is None or not is_anthropic(model):
        return None
    if max_tokens <= budget:
        raise InvalidRequestError(
            f"reasoning_effort uses {budget} thinking tokens, which count inside the token limit: "
            f"raise max_completion_tokens above {budget}",
            param="max_completion_tokens",
        )
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


def _json_instruction(response_format: dict[str, Any]) -> str:
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema:
        return f"{JSON_INSTRUCTION} It must conform to this JSON Schema: {msgspec.json.encode(schema).decode()}"
    return JSON_INSTRUCTION


# --- response ------------------------------------------------------------------------------------


def chat_response(
    answer: dict[str, Any], model: str, *, completion_id: str, created: int | None = None
) -> dict[str, Any]:
    """An OpenAI `chat.completion` for a Converse answer."""
    message = (answer.get("output") or {}).get("message")
    if not isinstance(message, dict):
        raise UpstreamError("Bedrock returned no message", code="upstream_malformed_response")
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            calls.append(tool_call(block["toolUse"]))
        elif "reasoningContent" in block:
            reasoning.append(((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text") or "")
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if any(reasoning):
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {"index": 0, "message": reply, "logprobs": None, "finish_reason": finish_reason(answer.get("stopReason"))}
        ],
        "usage": usage(answer.get("usage") or {}).to_openai(),
    }


def tool_call(tool_use: dict[str, Any]) -> dict[str, Any]:
    arguments = msgspec.json.encode(tool_use.get("input") or {}).decode()
    return {
        "id": tool_use.get("toolUseId"),
        "type": "function",
        "function": {"name": tool_use.get("name"), "arguments": arguments},
    }


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def usage(raw: dict[str, Any]) -> Usage:
    """Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI counts them inside the prompt."""
    cache_read = raw.get("cacheReadInputTokens") or 0
    cache_write = raw.get("cacheWriteInputTokens") or 0
    prompt = (raw.get("inputTokens") or 0) + cache_read + cache_write
    completion = raw.get("outputTokens") or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cache_read,
        cache_creation_tokens=cache_write,
    )
