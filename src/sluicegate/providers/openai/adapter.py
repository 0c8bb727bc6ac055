"""OpenAI and every OpenAI-compatible server (Mistral, Groq, vLLM, Ollama, ...), and Azure OpenAI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.base import Call, ChatResult, EmbeddingsResult, Provider
from sluicegate.providers.http import error_message
from sluicegate.providers.openai import chat
from sluicegate.streaming.sse import DONE


class OpenAIProvider(Provider):
    type_name: ClassVar[str] = "openai"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.config.base_url:
            raise ConfigurationError(f"provider '{self.name}' needs a base_url")
        self._base = self.config.base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", **self._auth_headers(), **self.config.headers}

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _url(self, endpoint: str, model: str) -> str:
        return f"{self._base}/{endpoint}"

    def _headers_for(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.forward_headers} if call.forward_headers else self._headers

    async def chat(self, call: Call) -> ChatResult:
        body = chat.chat_request(call.request, call.model, self.entry.drop_params, rename=self.entry.rename_params)
        response = await self.http.post(
            self._url("chat/completions", call.model), body, self._headers_for(call), call.timeouts
        )
        return ChatResult(response.body, chat.completion_usage(response.body))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = chat.chat_request(
            call.request, call.model, self.entry.drop_params, stream=True, rename=self.entry.rename_params
        )
        events = self.http.stream(
            self._url("chat/completions", call.model), body, self._headers_for(call), call.timeouts
        )
        # aclosing: returning at [DONE] must release the upstream connection now, not at garbage collection.
        async with aclosing(events):
            async for event in events:
                data = event.data
                if data == DONE:
                    return
                if event.event == "error" or chat.is_error_chunk(data):
                    raise UpstreamError(
                        f"the provider reported an error mid-stream: {error_message(data, 200)}",
                        code="upstream_stream_error",
                    )
                yield data
        raise UpstreamError("the provider's stream ended before [DONE]", code="upstream_incomplete_response")

    async def embeddings(self, call: Call) -> EmbeddingsResult:
        body = chat.chat_request(call.request, call.model, ())
        response = await self.http.post(
            self._url("embeddings", call.model), body, self._headers_for(call), call.timeouts
        )
        return EmbeddingsResult(response.body, chat.embeddings_usage(response.body))


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: the deployment is in the URL, the version in the query, the key in `api-key`."""

    type_name: ClassVar[str] = "azure"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.config.api_version:
            raise ConfigurationError(f"provider '{self.name}' (azure) needs api_version, e.g. 2024-10-21")

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self.config.api_key} if self.config.api_key else {}

    def _url(self, endpoint: str, model: str) -> str:
        return f"{self._base}/openai/deployments/{model}/{endpoint}?api-version={self.config.api_version}"
