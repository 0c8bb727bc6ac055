"""Google Gemini (AI Studio / Generative Language API): convert, send, map errors, convert back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.base import (
    Call,
    ChatResult,
    EmbeddingsResult,
    Provider,
    decode_upstream_object,
    new_completion_id,
)
from sluicegate.providers.gemini import chat, embeddings
from sluicegate.providers.gemini.stream import StreamTranslator


class GeminiProvider(Provider):
    type_name: ClassVar[str] = "gemini"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.config.base_url:
            raise ConfigurationError(f"provider '{self.name}' needs a base_url")
        self._base = self.config.base_url.rstrip("/")
        auth = {"x-goog-api-key": self.config.api_key} if self.config.api_key else {}
        self._headers = {"Content-Type": "application/json", **auth, **self.config.headers}

    def _url(self, model: str, method: str) -> str:
        return f"{self._base}/v1beta/{embeddings.model_resource(model)}:{method}"

    def _headers_for(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.forward_headers} if call.forward_headers else self._headers

    async def chat(self, call: Call) -> ChatResult:
        body = msgspec.json.encode(chat.chat_request(call.request))
        response = await self.http.post(
            self._url(call.model, "generateContent"), body, self._headers_for(call), call.timeouts
        )
        data = decode_upstream_object(response.body)
        completion = chat.chat_response(data, call.model, completion_id=new_completion_id(), created=int(time.time()))
        return ChatResult(msgspec.json.encode(completion), chat.usage(data))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = msgspec.json.encode(chat.chat_request(call.request))
        url = self._url(call.model, "streamGenerateContent") + "?alt=sse"
        translator = StreamTranslator(call.model, completion_id=new_completion_id(), created=int(time.time()))
        async for event in self.http.stream(url, body, self._headers_for(call), call.timeouts):
            for chunk in translator.feed(decode_upstream_object(event.data)):
                yield msgspec.json.encode(chunk)
        if not translator.finished:
            # Gemini has no terminal event: a body that ends before any finishReason was cut off.
            raise UpstreamError("Gemini's stream ended before a finishReason", code="upstream_incomplete_response")
        for chunk in translator.finish():
            yield msgspec.json.encode(chunk)

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        texts = embeddings.input_texts(call.request)
        body = msgspec.json.encode(embeddings.embeddings_request(texts, call.model, call.request.get("dimensions")))
        response = await self.http.post(
            self._url(call.model, "batchEmbedContents"), body, self._headers_for(call), call.timeouts
        )
        answer = embeddings.embeddings_response(
            decode_upstream_object(response.body),
            call.model,
            texts,
            encoding_format=call.request.get("encoding_format") or "float",
        )
        return EmbeddingsResult(msgspec.json.encode(answer), embeddings.estimated_usage(texts))
