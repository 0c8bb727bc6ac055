"""Pure converters between OpenAI chat completions and Gemini `generateContent`.

No I/O and no side effects, so each is tested with plain input/output pairs. The stream translator
(`stream.py`) shares the answer-side helpers at the bottom: finish reasons, tool call ids, usage.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError, UpstreamError
from sluicegate.providers.base import Usage

# --- request ------------------------------------------------------------------------------------


def chat_request(request: dict[str, Any]) -> dict[str, Any]:
    """The Gemini `GenerateContentRequest` for an OpenAI chat request (the model goes in the URL)."""
    system_parts, contents = _contents(request.get("messages") or [])
    if not contents:
        raise InvalidRequestError("Gemini needs at least one user or assistant message", param="messages")
    body: dict[str, Any] = {"contents": contents}
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    tools = request.get("tools")
    if tools:
        body["tools"] = [{"functionDeclarations": [_function_declaration(tool, i) for i, tool in enumerate(tools)]}]
    tool_choice = request.get("tool_choice")
    if tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _function_calling_config(tool_choice)}
    generation_config = _generation_config(request)
    if generation_config:
        body["generationConfig"] = generation_config
    return body


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts and the user/model turns, consecutive same-role turns merged as Gemini requires."""
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # tool messages name only the call id; Gemini's functionResponse needs the function name
    call_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts.extend(_text_parts(message.get("content"), where))
        elif role == "user":
            _append_turn(contents, "user", _user_parts(message.get("content"), where))
        elif role == "assistant":
            _append_turn(contents, "model", _assistant_parts(message, where, call_names))
        elif role == "tool":
            _append_turn(contents, "user", [_function_response(message, where, call_names)])
        else:
            raise InvalidRequestError(f"unsupported message role {role!r}", param=f"{where}.role")
    return system_parts, contents


def _append_turn(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    # Gemini rejects empty turns and expects strictly alternating roles, so merge rather than append.
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            text = part.get("text") or ""
        elif kind == "refusal":
            text = part.get("refusal") or ""
        else:
            raise InvalidRequestError(
                f"content part type {kind!r} is not allowed here", param=f"{where}.content[{index}]"
            )
        if text:
            parts.append({"text": text})
    return parts


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_parts(content, where)
    parts = []
    for index, part in enumerate(content):
        param = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media_part(url, param))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}", "data": audio.get("data")}})
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise InvalidRequestError(
                    "Gemini needs files inline as file_data (file_id is not supported)", param=param
                )
            parts.append(_media_part(file["file_data"], param))
        else:
            raise InvalidRequestError(f"unsupported content part type {kind!r}", param=param)
    return parts


#: Gemini needs a MIME type even for remote files; the extension is the only hint an OpenAI request carries
_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "mp4": "video/mp4",
}
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.DOTALL)


def _media_part(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise InvalidRequestError("a media part needs a URL", param=param)
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise InvalidRequestError("data URLs must be base64 with a MIME type (data:<type>;base64,...)", param=param)
        return {"inlineData": {"mimeType": match["mime"], "data": match["data"]}}
    if url.startswith(("http://", "https://")):
        return {"fileData": {"fileUri": url, "mimeType": _guess_mime(url)}}
    raise InvalidRequestError("media URLs must be data: or http(s): URLs", param=param)


def _guess_mime(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    # Without a known extension an image_url is most likely a JPEG; Gemini sniffs the bytes anyway.
    return _MIME_BY_EXTENSION.get(extension, "image/jpeg")


#: the ids this module invents when Gemini gives none (see `tool_call_id`); Gemini never issued them
_SYNTHETIC_CALL_ID = re.compile(r"call_\d+_\d+")


def _assistant_parts(message: dict[str, Any], where: str, call_names: dict[str, str]) -> list[dict[str, Any]]:
    parts = _text_parts(message.get("content"), where)
    for index, tool_call in enumerate(message.get("tool_calls") or []):
        param = f"{where}.tool_calls[{index}]"
        function = tool_call.get("function") or {}
        name = function.get("name")
        if not name:
            raise InvalidRequestError("a tool call needs a function name", param=f"{param}.function.name")
        call: dict[str, Any] = {"name": name, "args": _parse_arguments(function.get("arguments"), param)}
        call_id = tool_call.get("id")
        if call_id:
            call_names[call_id] = name
            if not _SYNTHETIC_CALL_ID.fullmatch(call_id):
                call["id"] = call_id
        parts.append({"functionCall": call})
    return parts


def _parse_arguments(arguments: Any, param: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    try:
        args = msgspec.json.decode(arguments) if isinstance(arguments, (str, bytes)) else arguments
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "tool call arguments are not valid JSON", param=f"{param}.function.arguments"
        ) from None
    if not isinstance(args, dict):
        raise InvalidRequestError(
            "Gemini needs tool call arguments to be a JSON object", param=f"{param}.function.arguments"
        )
    return args


def _function_response(message: dict[str, Any], where: str, call_names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = call_names.get(call_id or "") or message.get("name")
    if not name:
        raise InvalidRequestError(
            f"no earlier assistant tool call has the id {call_id!r}", param=f"{where}.tool_call_id"
        )
    text = "".join(part["text"] for part in _text_parts(message.get("content"), where))
    response: dict[str, Any] = {"name": name, "response": _response_object(text)}
    if call_id and not _SYNTHETIC_CALL_ID.fullmatch(call_id):
        response["id"] = call_id
    return {"functionResponse": response}


def _response_object(text: str) -> dict[str, Any]:
    # Gemini's `response` must be a JSON object; anything else is wrapped so no information is lost.
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _function_declaration(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), dict):
        raise InvalidRequestError("Gemini supports only function tools", param=f"tools[{index}]")
    function = tool["function"]
    declaration: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    # Gemini rejects an OBJECT schema without properties; a function without arguments omits it.
    if parameters and not (parameters.get("type") == "object" and not parameters.get("properties")):
        declaration["parameters"] = gemini_schema(parameters)
    return declaration


_CALLING_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def _function_calling_config(tool_choice: Any) -> dict[str, Any]:
    if isinstance(tool_choice, str) and tool_choice in _CALLING_MODES:
        return {"mode": _CALLING_MODES[tool_choice]}
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        if name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise InvalidRequestError(f"unsupported tool_choice {tool_choice!r}", param="tool_choice")


#: OpenAI parameter -> Gemini generationConfig field, for the ones that are plain renames
_RENAMES = {
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def _generation_config(request: dict[str, Any]) -> dict[str, Any]:
    config = {gemini: request[openai] for openai, gemini in _RENAMES.items() if request.get(openai) is not None}
    max_tokens = request.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = request.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    config.update(_response_format(request.get("response_format")))
    thinking = thinking_config(request.get("reasoning_effort"))
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


#: thinking budget per OpenAI `reasoning_effort`: the Anthropic converter's levels, so an alias that fails over
#: between the two thinks about as much on either; `minimal` is 512, the lowest every Gemini 2.5 model accepts
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 4096, "high": 16384}


def thinking_config(effort: str | None) -> dict[str, Any] | None:
    """Gemini's `thinkingConfig` for `reasoning_effort`; None leaves the model's default (dynamic thinking)."""
    budget = THINKING_BUDGETS.get(effort or "")
    if budget is None:
        return None
    # Thought summaries come back as `thought` parts, which the answer maps to `reasoning_content`.
    return {"thinkingBudget": budget, "includeThoughts": budget > 0}


def _response_format(response_format: Any) -> dict[str, Any]:
    if not response_format:
        return {}
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError("json_schema needs a schema object", param="response_format.json_schema.schema")
        return {"responseMimeType": "application/json", "responseSchema": gemini_schema(schema)}
    raise InvalidRequestError(f"unsupported response_format type {kind!r}", param="response_format.type")


# --- JSON schema --------------------------------------------------------------------------------

#: JSON-schema keywords Gemini's OpenAPI-subset `Schema` answers with 400 "Unknown name"
_UNSUPPORTED_SCHEMA_KEYS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "strict",
        "examples",
        "additionalProperties",
        "unevaluatedProperties",
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "const",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "if",
        "then",
        "else",
        "not",
    }
)


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON schema with the keywords Gemini rejects removed, at every depth.

    Only schema positions are walked (`properties` values, `items`, `anyOf` members), so a property that
    happens to be called `strict` or `additionalProperties` survives.
    """
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _UNSUPPORTED_SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            result[key] = {name: _sub_schema(sub) for name, sub in value.items()}
        elif key == "items":
            result[key] = _sub_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            result[key] = [_sub_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, list):
            result.update(_single_type(value))
        else:
            result[key] = value
    return result


def _sub_schema(value: Any) -> Any:
    return gemini_schema(value) if isinstance(value, dict) else value


def _single_type(types: list[str]) -> dict[str, Any]:
    # JSON schema's ["string", "null"] is OpenAPI's type + nullable; Gemini takes only a single type.
    concrete = [name for name in types if name != "null"]
    result: dict[str, Any] = {"type": concrete[0]} if len(concrete) == 1 else {"anyOf": [{"type": t} for t in concrete]}
    if len(concrete) != len(types):
        result["nullable"] = True
    return result


# --- response -----------------------------------------------------------------------------------

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def finish_reason(gemini_reason: str, has_tool_calls: bool) -> str:
    """Gemini ends a function-calling answer with STOP; OpenAI clients look for `tool_calls`."""
    reason = _FINISH_REASONS.get(gemini_reason, "stop")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


def tool_call_id(function_call: dict[str, Any], candidate: int, position: int) -> str:
    """Gemini's own id when it sends one, else one derived from the position so streams and retries agree."""
    return str(function_call.get("id") or f"call_{candidate}_{position}")


def tool_call(function_call: dict[str, Any], candidate: int, position: int) -> dict[str, Any]:
    return {
        "id": tool_call_id(function_call, candidate, position),
        "type": "function",
        "function": {
            "name": function_call.get("name", ""),
            "arguments": msgspec.json.encode(function_call.get("args") or {}).decode(),
        },
    }


def usage(response: dict[str, Any]) -> Usage:
    """Gemini counts thinking separately; OpenAI counts it inside completion_tokens."""
    metadata = response.get("usageMetadata") or {}
    prompt = metadata.get("promptTokenCount", 0)
    thoughts = metadata.get("thoughtsTokenCount", 0)
    completion = metadata.get("candidatesTokenCount", 0) + thoughts
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=metadata.get("cachedContentTokenCount", 0),
        reasoning_tokens=thoughts,
    )


def chat_response(response: dict[str, Any], model: str, *, completion_id: str, created: int) -> dict[str, Any]:
    """An OpenAI `chat.completion` for a Gemini `GenerateContentResponse`.

    A prompt blocked by Gemini's safety filters comes back with `promptFeedback.blockReason` and no
    candidates. OpenAI has no such answer, so it becomes one empty choice with finish_reason
    `content_filter`: clients already handle that, and a 200 keeps it from being retried elsewhere as
    if the provider had failed.
    """
    candidates = response.get("candidates")
    if candidates:
        choices = [_choice(candidate, position) for position, candidate in enumerate(candidates)]
    elif (response.get("promptFeedback") or {}).get("blockReason"):
        choices = [_blocked_choice()]
    else:
        raise UpstreamError("Gemini returned no candidates", code="upstream_malformed_response")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(response).to_openai(),
    }


def _choice(candidate: dict[str, Any], position: int) -> dict[str, Any]:
    index = candidate.get("index", position)
    text, reasoning, calls = split_parts(candidate, index, 0)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(candidate.get("finishReason", "STOP"), bool(calls)),
    }


def _blocked_choice() -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": "content_filter",
    }


def split_parts(candidate: dict[str, Any], index: int, first_call: int) -> tuple[str, str, list[dict[str, Any]]]:
    """A candidate's answer text, thought text and OpenAI tool calls (numbered from `first_call`)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            calls.append(tool_call(part["functionCall"], index, first_call + len(calls)))
        elif "text" in part:
            (reasoning if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(reasoning), calls
