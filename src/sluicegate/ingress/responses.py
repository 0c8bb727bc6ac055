"""OpenAI's Responses API as an ingress dialect, the non-stateful subset. Pure converters, no I/O.

Supported: `input` as a string or a list of items (messages with text, image and file parts,
`function_call` and `function_call_output` items), `instructions`, function tools and `tool_choice`,
`reasoning.effort`, `text.format`, sampling fields and `max_output_tokens`, and streaming with the documented
events (`response.created`, `response.output_item.added`, `response.output_text.delta`,
`response.function_call_arguments.delta`, ..., `response.completed`).

Refused with a 400, because they need state or tools the gateway does not host: `previous_response_id`,
`conversation`, `background`, `prompt`, item references and built-in tools (web search, file search,
computer use, ...). `store` is accepted and ignored: nothing is stored, and answers say `"store": false`.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from sluicegate.errors import GatewayError, InvalidRequestError
from sluicegate.streaming.sse import frame

_STATEFUL = ("previous_response_id", "conversation", "background", "prompt")

#: chat finish_reason -> (status, incomplete reason)
_OUTCOMES: dict[str, tuple[str, str | None]] = {
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}

Item = dict[str, Any]


# --- request -----------------------------------------------------------------------------------------


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The internal OpenAI chat request for a Responses API request. Never mutates `body`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a string", param="model")
    for name in _STATEFUL:
        if body.get(name):
            raise InvalidRequestError(
                f"'{name}' is not supported: the gateway's Responses API is stateless; send the whole input",
                param=name,
            )
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": _instructions(body["instructions"])})
    messages.extend(input_messages(body.get("input")))
    request: dict[str, Any] = {"model": model, "messages": messages}
    effort = (body.get("reasoning") or {}).get("effort")
    if body.get("max_output_tokens") is not None:
        # Reasoning models take only max_completion_tokens; others know max_tokens best.
        request["max_completion_tokens" if effort else "max_tokens"] = body["max_output_tokens"]
    if effort:
        request["reasoning_effort"] = effort
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "top_logprobs"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("safety_identifier") and "user" not in request:
        request["user"] = body["safety_identifier"]
    request.update(_tools(body))
    response_format = _response_format((body.get("text") or {}).get("format"))
    if response_format is not None:
        request["response_format"] = response_format
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _instructions(instructions: Any) -> str:
    if not isinstance(instructions, str):
        raise InvalidRequestError("'instructions' must be a string", param="instructions")
    return instructions


def input_messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages for `input`: consecutive function calls join one assistant message, as chat wants them."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("'input' is required: a string or a non-empty list of items", param="input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object", param=where)
        kind = item.get("type") or "message"
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _append_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(_call_output(item, where))
        elif kind == "reasoning":
            continue  # earlier reasoning is the provider's own state; chat has no way to send it back
        else:
            raise InvalidRequestError(f"{where}: items of type '{kind}' are not supported by the gateway", param=where)
    return messages


def _message(item: Item, where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequestError(f"{where}.role must be user, assistant, system or developer", param=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    parts = [_part(part, f"{where}.content[{number}]") for number, part in enumerate(content)]
    if role != "user":
        # Only user turns may carry images and files in chat; the others are text.
        if any(part["type"] != "text" for part in parts):
            raise InvalidRequestError(f"{where}: only user messages may contain images or files", param=where)
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        if not part.get("image_url"):
            raise InvalidRequestError(f"{where}: images need an image_url (file_id is not supported)", param=where)
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if not part.get("file_data"):
            raise InvalidRequestError(
                f"{where}: files need file_data (file_id and file_url are not supported)", param=where
            )
        file = {"file_data": part["file_data"], "filename": part.get("filename") or "file"}
        return {"type": "file", "file": file}
    raise InvalidRequestError(f"{where}: content of type '{kind}' is not supported", param=where)


def _append_call(messages: list[dict[str, Any]], item: Item, where: str) -> None:
    if not item.get("call_id") or not item.get("name"):
        raise InvalidRequestError(f"{where}: a function_call needs call_id and name", param=where)
    call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _call_output(item: Item, where: str) -> dict[str, Any]:
    if not item.get("call_id"):
        raise InvalidRequestError(f"{where}: a function_call_output needs call_id", param=f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        parts = [_part(part, f"{where}.output[{number}]") for number, part in enumerate(output)]
        output = "".join(part.get("text", "") for part in parts)
    return {"role": "tool", "tool_call_id": item["call_id"], "content": output if isinstance(output, str) else ""}


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        converted = []
        for index, tool in enumerate(tools):
            if tool.get("type") != "function":
                raise InvalidRequestError(
                    f"tools[{index}]: built-in tools ('{tool.get('type')}') are not supported by the gateway; "
                    "use function tools",
                    param=f"tools[{index}]",
                )
            function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
            converted.append({"type": "function", "function": function})
        request["tools"] = converted
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        request["tool_choice"] = choice
    elif isinstance(choice, dict):
        if choice.get("type") != "function":
            raise InvalidRequestError(f"tool_choice type '{choice.get('type')}' is not supported", param="tool_choice")
        request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    return request


def _response_format(text_format: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (text_format or {}).get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert text_format is not None
        schema = {key: text_format[key] for key in ("name", "schema", "strict", "description") if key in text_format}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError(f"text.format type '{kind}' is not supported", param="text.format")


# --- response ------------------------------------------------------------------------------------


def response_id(completion_id: str | None) -> str:
    raw = (completion_id or "").removeprefix("chatcmpl-")
    return f"resp_{raw or 'sluicegate'}"


def response_object(
    body: dict[str, Any],
    rid: str,
    output: list[Item],
    *,
    status: str,
    created_at: int,
    usage: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `response` object, echoing the request's settings as the Responses API does."""
    text = body.get("text") or {"format": {"type": "text"}}
    reasoning = body.get("reasoning") or {}
    return {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def from_chat_completion(
    completion: dict[str, Any], body: dict[str, Any], *, created_at: int | None = None
) -> dict[str, Any]:
    """The Responses API `response` for an OpenAI `chat.completion`."""
    rid = response_id(completion.get("id"))
    suffix = rid.removeprefix("resp_")
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[Item] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        output.append(_reasoning_item(f"rs_{suffix}_{len(output)}", reasoning))
    if message.get("content") or message.get("refusal"):
        text, refusal = _text(message.get("content")), message.get("refusal")
        output.append(_message_item(f"msg_{suffix}_{len(output)}", text, refusal))
    for number, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        call_id = call.get("id") or f"call_{number}"
        name, arguments = function.get("name") or "", function.get("arguments") or ""
        output.append(_call_item(f"fc_{suffix}_{len(output)}", call_id, name, arguments))
    status, reason = _OUTCOMES.get(choice.get("finish_reason") or "stop", ("completed", None))
    return response_object(
        body,
        rid,
        output,
        status=status,
        created_at=int(time.time()) if created_at is None else created_at,
        usage=responses_usage(completion.get("usage") or {}),
        incomplete_reason=reason,
    )


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content or ""


def _message_item(item_id: str, text: str, refusal: str | None = None, status: str = "completed") -> Item:
    content: list[dict[str, Any]] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _reasoning_item(item_id: str, text: str) -> Item:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"type": "reasoning", "id": item_id, "summary": summary}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> Item:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def responses_usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
        },
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


# --- stream --------------------------------------------------------------------------------------


class _OpenItem:
    __slots__ = ("call_id", "id", "kind", "name", "output_index", "text")

    def __init__(self, kind: str, item_id: str, output_index: int, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.id = item_id
        self.output_index = output_index
        self.call_id = call_id
        self.name = name
        self.text = ""


class StreamEncoder:
    """OpenAI chunks in, Responses API events out, each with its `sequence_number`.

    The item being written (a reasoning summary, the message, a function call) gets its `added` event when
    it starts and its `done` events when the next kind starts or the stream ends. Function calls stay open
    until the end, because OpenAI-format streams may interleave the arguments of parallel calls.
    """

    def __init__(self, body: dict[str, Any], *, created_at: int | None = None) -> None:
        self._body = body
        self._created_at = int(time.time()) if created_at is None else created_at
        self._id = ""
        self._sequence = 0
        self._items: list[_OpenItem] = []
        self._open: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}
        self._done: dict[int, Item] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bytes:
        data: dict[str, Any] = msgspec.json.decode(chunk)
        events: list[bytes] = []
        if not self._id:
            self._id = response_id(data.get("id"))
            snapshot = self._response("in_progress", [])
            events.append(self._event("response.created", {"response": snapshot}))
            events.append(self._event("response.in_progress", {"response": snapshot}))
        if data.get("usage"):
            self._usage = data["usage"]
        for choice in data.get("choices") or []:
            if choice.get("index", 0) == 0:
                self._choice(choice, events)
        return b"".join(events)

    def finish(self) -> bytes:
        events: list[bytes] = []
        self._close_open(events)
        for item in list(self._calls.values()):
            self._close(item, events)
        status, reason = _OUTCOMES.get(self._finish_reason or "stop", ("completed", None))
        output = [self._done[index] for index in sorted(self._done)]
        response = self._response(status, output, usage=responses_usage(self._usage), incomplete_reason=reason)
        name = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(name, {"response": response}))
        return b"".join(events)

    def error(self, error: GatewayError) -> bytes:
        """The `error` event and `response.failed`, for a stream that broke after it started."""
        events = [self._event("error", {"code": error.code, "message": error.message, "param": error.param})]
        if self._id:
            failed = self._response(
                "failed", [], error={"code": error.code or "server_error", "message": error.message}
            )
            events.append(self._event("response.failed", {"response": failed}))
        return b"".join(events)

    # --- items ---------------------------------------------------------------------------------

    def _choice(self, choice: dict[str, Any], events: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            item = self._ensure("reasoning", events)
            item.text += reasoning
            events.append(
                self._event(
                    "response.reasoning_summary_text.delta", {**self._at(item), "summary_index": 0, "delta": reasoning}
                )
            )
        text = _text(delta.get("content"))
        if text:
            item = self._ensure("message", events)
            item.text += text
            events.append(
                self._event(
                    "response.output_text.delta", {**self._at(item), "content_index": 0, "delta": text, "logprobs": []}
                )
            )
        for call in delta.get("tool_calls") or []:
            self._tool_call(call, events)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]

    def _tool_call(self, call: dict[str, Any], events: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(position)
        if item is None:
            self._close_open(events)
            call_id = call.get("id") or f"call_{position}"
            item = self._add("function_call", events, call_id=call_id, name=function.get("name") or "")
            self._calls[position] = item
        arguments = function.get("arguments")
        if arguments:
            item.text += arguments
            events.append(self._event("response.function_call_arguments.delta", {**self._at(item), "delta": arguments}))

    def _ensure(self, kind: str, events: list[bytes]) -> _OpenItem:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close_open(events)
        self._open = self._add(kind, events)
        return self._open

    def _add(self, kind: str, events: list[bytes], *, call_id: str = "", name: str = "") -> _OpenItem:
        suffix = self._id.removeprefix("resp_")
        index = len(self._items)
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc"}[kind]
        item = _OpenItem(kind, f"{prefix}_{suffix}_{index}", index, call_id, name)
        self._items.append(item)
        events.append(
            self._event(
                "response.output_item.added", {"output_index": index, "item": self._snapshot(item, "in_progress")}
            )
        )
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self._event("response.content_part.added", {**self._at(item), "content_index": 0, "part": part})
            )
        elif kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added", {**self._at(item), "summary_index": 0, "part": part}
                )
            )
        return item

    def _close_open(self, events: list[bytes]) -> None:
        if self._open is not None:
            self._close(self._open, events)
            self._open = None

    def _close(self, item: _OpenItem, events: list[bytes]) -> None:
        if item.output_index in self._done:
            return
        at = self._at(item)
        if item.kind == "message":
            events.append(
                self._event("response.output_text.done", {**at, "content_index": 0, "text": item.text, "logprobs": []})
            )
            part = {"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}
            events.append(self._event("response.content_part.done", {**at, "content_index": 0, "part": part}))
        elif item.kind == "reasoning":
            events.append(
                self._event("response.reasoning_summary_text.done", {**at, "summary_index": 0, "text": item.text})
            )
            part = {"type": "summary_text", "text": item.text}
            events.append(self._event("response.reasoning_summary_part.done", {**at, "summary_index": 0, "part": part}))
        else:
            events.append(
                self._event("response.function_call_arguments.done", {**at, "name": item.name, "arguments": item.text})
            )
        done = self._snapshot(item, "completed")
        self._done[item.output_index] = done
        events.append(self._event("response.output_item.done", {"output_index": item.output_index, "item": done}))

    def _snapshot(self, item: _OpenItem, status: str) -> Item:
        if item.kind == "message":
            snapshot = _message_item(item.id, item.text, status=status)
            if status != "completed":
                snapshot["content"] = []
            return snapshot
        if item.kind == "reasoning":
            return _reasoning_item(item.id, item.text if status == "completed" else "")
        return _call_item(item.id, item.call_id, item.name, item.text if status == "completed" else "", status)

    # --- framing -------------------------------------------------------------------------------

    def _at(self, item: _OpenItem) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index}

    def _response(self, status: str, output: list[Item], **extra: Any) -> dict[str, Any]:
        return response_object(
            self._body, self._id or response_id(None), output, status=status, created_at=self._created_at, **extra
        )

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        payload = {"type": name, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return frame(msgspec.json.encode(payload), name)


def error_body(error: GatewayError) -> dict[str, Any]:
    return error.to_dict()
