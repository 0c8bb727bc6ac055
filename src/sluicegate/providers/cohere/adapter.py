"""Cohere's v2 API: chat (JSON and SSE), embed and rerank. The conversions live in chat.py, stream.py, embed.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import msgspec

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider, RerankResult, Usage
from sluicegate.providers.cohere import chat, embed
from sluicegate.providers.cohere.stream import StreamTranslator


class CohereProvider(Provider):
    type_name: ClassVar[str] = "cohere"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.config.base_url:
            raise ConfigurationError(f"provider '{self.name}' needs a base_url")
        self._base = f"{self.config.base_url.rstrip('/')}/v2"
        auth = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **auth,
            **self.config.headers,
        }

    def _headers_for(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.forward_headers} if call.forward_headers else self._headers

    async def _post(self, endpoint: str, body: dict[str, Any], call: Call) -> dict[str, Any]:
        response = await self.http.post(
            f"{self._base}/{endpoint}", msgspec.json.encode(body), self._headers_for(call), call.timeouts
        )
        return chat.decode(response.body)

    async def chat(self, call: Call) -> ChatResult:
        answer = await self._post("chat", chat.chat_request(call.request, call.model), call)
        completion = chat.chat_response(answer, call.model)
        return ChatResult(msgspec.json.encode(completion), chat.usage(answer.get("usage") or {}))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = msgspec.json.encode(chat.chat_request(call.request, call.model, stream=True))
        translator = StreamTranslator(call.model, created=int(time.time()))
        events = self.http.stream(f"{self._base}/chat", body, self._headers_for(call), call.timeouts)
        async with aclosing(events):
            async for event in events:
                if not event.data:
                    continue
                for chunk in translator.feed(chat.decode(event.data)):
                    yield msgspec.json.encode(chunk)
                if translator.finished:
                    break
        if not translator.finished:
            raise UpstreamError("Cohere's stream ended before message-end", code="upstream_incomplete_response")
        for chunk in translator.finish():
            yield msgspec.json.encode(chunk)

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        body = embed.embed_request(call.request, call.model)
        answer = await self._post("embed", body, call)
        converted = embed.embed_response(
            answer, call.model, len(body["texts"]), call.request.get("encoding_format") or "float"
        )
        tokens = converted["usage"]["prompt_tokens"]
        return EmbeddingsResult(msgspec.json.encode(converted), Usage(prompt_tokens=tokens, total_tokens=tokens))

    async def rerank(self, call: Call) -> RerankResult:
        answer = await self._post("rerank", embed.rerank_request(call.request, call.model), call)
        converted = embed.rerank_response(answer, call.request, call.model)
        return RerankResult(msgspec.json.encode(converted), embed.rerank_usage(call.request))
