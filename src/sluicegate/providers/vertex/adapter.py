"""Google Vertex AI: Gemini and Anthropic models in a Google Cloud project, with service-account auth.

The wire formats are the publishers' own, so this adapter reuses their converters: Gemini's
(`generateContent`, `streamGenerateContent?alt=sse`, embeddings through `predict`) and Anthropic's Messages
body (`rawPredict`, `streamRawPredict`) with the model in the URL and `anthropic_version` in the body.
A model whose name starts with `claude` goes to the Anthropic publisher, every other one to Google's.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import msgspec

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.anthropic import chat as anthropic_chat
from sluicegate.providers.anthropic.stream import StreamTranslator as AnthropicTranslator
from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider, Usage, new_completion_id
from sluicegate.providers.gemini import chat as gemini_chat
from sluicegate.providers.gemini import embeddings as gemini_embeddings
from sluicegate.providers.gemini.stream import StreamTranslator as GeminiTranslator
from sluicegate.providers.vertex.auth import TokenSource
from sluicegate.providers.vertex.config import VertexConfig
from sluicegate.streaming.sse import SSEEvent

#: the Messages API version Anthropic-on-Vertex takes in the body instead of a header
ANTHROPIC_VERTEX_VERSION = "vertex-2023-10-16"
DEFAULT_LOCATION = "us-central1"


class VertexProvider(Provider):
    type_name: ClassVar[str] = "vertex"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        vertex = self.config.vertex or VertexConfig()
        path = vertex.credentials_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not path:
            raise ConfigurationError(
                f"provider '{self.name}' (vertex) needs vertex.credentials_file or GOOGLE_APPLICATION_CREDENTIALS"
            )
        self._tokens = TokenSource.from_file(path)
        project = vertex.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or self._tokens.project
        if not project:
            raise ConfigurationError(f"provider '{self.name}' (vertex) needs vertex.project or GOOGLE_CLOUD_PROJECT")
        location = vertex.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION
        host = (
            "https://aiplatform.googleapis.com"
            if location == "global"
            else f"https://{location}-aiplatform.googleapis.com"
        )
        base = (self.config.base_url or host).rstrip("/")
        self._prefix = f"{base}/v1/projects/{project}/locations/{location}/publishers"
        self._headers = {"Content-Type": "application/json", **self.config.headers}

    def _url(self, model: str, method: str) -> str:
        publisher = "anthropic" if is_anthropic(model) else "google"
        return f"{self._prefix}/{publisher}/models/{model}:{method}"

    async def _headers_for(self, call: Call) -> dict[str, str]:
        token = await self._tokens.token(self.http)
        return {**self._headers, "Authorization": f"Bearer {token}", **call.forward_headers}

    # --- chat ----------------------------------------------------------------------------------

    async def chat(self, call: Call) -> ChatResult:
        if is_anthropic(call.model):
            body = msgspec.json.encode(anthropic_body(call.request, call.model, stream=False))
            response = await self.http.post(
                self._url(call.model, "rawPredict"), body, await self._headers_for(call), call.timeouts
            )
            message = _decode(response.body)
            if not isinstance(message.get("content"), list):
                raise UpstreamError("Vertex returned a malformed Anthropic message", code="upstream_malformed_response")
            completion = anthropic_chat.chat_response(message)
            return ChatResult(
                msgspec.json.encode(completion), anthropic_chat.usage_from_anthropic(message.get("usage") or {})
            )
        body = msgspec.json.encode(gemini_chat.chat_request(call.request))
        response = await self.http.post(
            self._url(call.model, "generateContent"), body, await self._headers_for(call), call.timeouts
        )
        data = _decode(response.body)
        completion = gemini_chat.chat_response(
            data, call.model, completion_id=new_completion_id(), created=int(time.time())
        )
        return ChatResult(msgspec.json.encode(completion), gemini_chat.usage(data))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        chunks = self._anthropic_stream(call) if is_anthropic(call.model) else self._gemini_stream(call)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def _anthropic_stream(self, call: Call) -> AsyncGenerator[bytes, None]:
        body = msgspec.json.encode(anthropic_body(call.request, call.model, stream=True))
        translator = AnthropicTranslator()
        events = await self._events(self._url(call.model, "streamRawPredict"), body, call)
        async with aclosing(events):
            async for event in events:
                if not event.data:
                    continue
                for chunk in translator.feed(event.event, _decode(event.data)):
                    yield msgspec.json.encode(chunk)
                if translator.finished:
                    return
        raise UpstreamError("the provider's stream ended before message_stop", code="upstream_incomplete_response")

    async def _gemini_stream(self, call: Call) -> AsyncGenerator[bytes, None]:
        body = msgspec.json.encode(gemini_chat.chat_request(call.request))
        translator = GeminiTranslator(call.model, completion_id=new_completion_id(), created=int(time.time()))
        events = await self._events(self._url(call.model, "streamGenerateContent") + "?alt=sse", body, call)
        async with aclosing(events):
            async for event in events:
                for chunk in translator.feed(_decode(event.data)):
                    yield msgspec.json.encode(chunk)
        if not translator.finished:
            raise UpstreamError("Gemini's stream ended before a finishReason", code="upstream_incomplete_response")
        for chunk in translator.finish():
            yield msgspec.json.encode(chunk)

    async def _events(self, url: str, body: bytes, call: Call) -> AsyncGenerator[SSEEvent, None]:
        headers = await self._headers_for(call)
        return self.http.stream(url, body, headers, call.timeouts)

    # --- embeddings ----------------------------------------------------------------------------

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        texts = gemini_embeddings.input_texts(call.request)
        body = msgspec.json.encode(embeddings_request(texts, call.request.get("dimensions")))
        response = await self.http.post(
            self._url(call.model, "predict"), body, await self._headers_for(call), call.timeouts
        )
        answer = embeddings_response(
            _decode(response.body), call.model, texts, call.request.get("encoding_format") or "float"
        )
        tokens = answer["usage"]["prompt_tokens"]
        return EmbeddingsResult(msgspec.json.encode(answer), Usage(prompt_tokens=tokens, total_tokens=tokens))


def is_anthropic(model: str) -> bool:
    return model.startswith("claude")


def anthropic_body(request: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """Anthropic's Messages body as Vertex takes it: no `model` (it is in the URL), `anthropic_version` added."""
    body = anthropic_chat.chat_request(request, model, stream=stream)
    body.pop("model", None)
    body["anthropic_version"] = ANTHROPIC_VERTEX_VERSION
    return body


def embeddings_request(texts: list[str], dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
    if dimensions is not None:
        body["parameters"] = {"outputDimensionality": dimensions}
    return body


def embeddings_response(answer: dict[str, Any], model: str, texts: list[str], encoding_format: str) -> dict[str, Any]:
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(texts):
        raise UpstreamError(
            "Vertex returned a different number of embeddings than inputs", code="upstream_malformed_response"
        )
    tokens = 0
    vectors = []
    for prediction in predictions:
        embedding = prediction.get("embeddings") or {}
        vectors.append(embedding.get("values") or [])
        tokens += int((embedding.get("statistics") or {}).get("token_count") or 0)
    # Reuse the Gemini converter's OpenAI list (and base64 packing), with Vertex's real token counts.
    converted = gemini_embeddings.embeddings_response(
        {"embeddings": [{"values": v} for v in vectors]}, model, texts, encoding_format=encoding_format
    )
    converted["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return converted


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("Vertex returned a malformed response", code="upstream_malformed_response")
    return data
