"""Anthropic's Messages API: convert, send, map errors, convert back. The conversions live in chat.py and stream.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import msgspec

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.anthropic import chat
from sluicegate.providers.anthropic.stream import StreamTranslator
from sluicegate.providers.base import Call, ChatResult, Provider, decode_upstream_object

#: the API version this adapter's converters speak; newer features arrive through `anthropic-beta` headers
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    type_name: ClassVar[str] = "anthropic"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.config.base_url:
            raise ConfigurationError(f"provider '{self.name}' needs a base_url")
        self._url = f"{self.config.base_url.rstrip('/')}/v1/messages"
        auth = {"x-api-key": self.config.api_key} if self.config.api_key else {}
        self._headers = {
            "Content-Type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            **auth,
            **self.config.headers,
        }

    def _headers_for(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.forward_headers} if call.forward_headers else self._headers

    async def chat(self, call: Call) -> ChatResult:
        body = msgspec.json.encode(chat.chat_request(call.request, call.model))
        response = await self.http.post(self._url, body, self._headers_for(call), call.timeouts)
        message = _decode_message(response.body)
        completion = chat.chat_response(message)
        return ChatResult(msgspec.json.encode(completion), chat.usage_from_anthropic(message.get("usage") or {}))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = msgspec.json.encode(chat.chat_request(call.request, call.model, stream=True))
        translator = StreamTranslator()
        # Returning at message_stop, or the client going away, must release the upstream connection at once.
        events = self.http.stream(self._url, body, self._headers_for(call), call.timeouts)
        async with aclosing(events):
            async for event in events:
                if not event.data:
                    continue
                for chunk in translator.feed(event.event, decode_upstream_object(event.data, "stream event")):
                    yield msgspec.json.encode(chunk)
                if translator.finished:
                    return
        raise UpstreamError("the provider's stream ended before message_stop", code="upstream_incomplete_response")


def _decode_message(body: bytes) -> dict[str, Any]:
    message = decode_upstream_object(body, "message")
    if not isinstance(message.get("content"), list):
        raise UpstreamError("the provider sent a malformed message", code="upstream_malformed_response")
    return message
