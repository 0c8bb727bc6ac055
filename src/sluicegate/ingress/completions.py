"""OpenAI's legacy text completions (`POST /v1/completions`) as an ingress dialect. Pure converters, no I/O.

The prompt becomes one user message of a chat request, so a legacy client reaches every provider and every
gateway feature. That is a chat model answering a prompt, not raw continuation: fine for the instruction
prompts legacy clients send today, not a way to reach base models. Refused with a 400, because they need raw
token access: several prompts in one request, token-array prompts, `suffix`, `echo`, `best_of` > 1 and
`logprobs`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluicegate.errors import InvalidRequestError

#: fields with the same meaning in both APIs, passed through as they are
_SHARED = (
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "user",
    "stream",
    "stream_options",
)


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The internal chat request for a legacy completions request. Never mutates `body`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a string", param="model")
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": _prompt(body.get("prompt"))}]}
    for name in _SHARED:
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("suffix"):
        raise InvalidRequestError("'suffix' (fill-in-the-middle) is not supported by the gateway", param="suffix")
    if body.get("echo"):
        raise InvalidRequestError("'echo' is not supported by the gateway", param="echo")
    if (body.get("best_of") or 1) > 1:
        raise InvalidRequestError("'best_of' above 1 is not supported by the gateway; use n", param="best_of")
    if body.get("logprobs") is not None:
        raise InvalidRequestError("'logprobs' is not supported on /v1/completions by the gateway", param="logprobs")
    return request


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt:
        return prompt
    raise InvalidRequestError(
        "'prompt' must be one non-empty string (several prompts or token arrays are not supported)", param="prompt"
    )


def completion_response(completion: dict[str, Any]) -> dict[str, Any]:
    """The `text_completion` for an OpenAI `chat.completion`."""
    choices = [
        {
            "text": _text((choice.get("message") or {}).get("content")),
            "index": choice.get("index", 0),
            "logprobs": None,
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in completion.get("choices") or []
    ]
    answer = {**_base(completion), "choices": choices}
    if completion.get("usage") is not None:
        answer["usage"] = completion["usage"]
    return answer


def completion_chunk(chunk: bytes) -> bytes:
    """The legacy stream chunk for one OpenAI `chat.completion.chunk` (usage-only chunks keep `choices: []`)."""
    data: dict[str, Any] = msgspec.json.decode(chunk)
    choices = [
        {
            "text": _text((choice.get("delta") or {}).get("content")),
            "index": choice.get("index", 0),
            "logprobs": None,
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in data.get("choices") or []
    ]
    converted = {**_base(data), "choices": choices}
    if data.get("usage") is not None:
        converted["usage"] = data["usage"]
    return msgspec.json.encode(converted)


def _base(data: dict[str, Any]) -> dict[str, Any]:
    raw = str(data.get("id") or "").removeprefix("chatcmpl-")
    return {
        "id": f"cmpl-{raw or 'sluicegate'}",
        "object": "text_completion",
        "created": data.get("created", 0),
        "model": data.get("model", ""),
    }


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content or ""
