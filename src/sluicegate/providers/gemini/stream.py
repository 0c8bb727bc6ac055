"""Pure translation of a Gemini `streamGenerateContent?alt=sse` stream into OpenAI chunks.

Each Gemini event is a whole `GenerateContentResponse` holding the next piece of every candidate, so one
event becomes at most one delta chunk per candidate, plus a separate finish chunk when the candidate
ends. Gemini has no terminal event: the stream simply ends, which is why `finished` exists.
"""

from __future__ import annotations

from typing import Any

from sluicegate.errors import UpstreamError
from sluicegate.providers.base import Usage
from sluicegate.providers.gemini import chat


class StreamTranslator:
    """Feed it each decoded event in order; call `finish()` once the body ended with `finished` true."""

    def __init__(self, model: str, *, completion_id: str, created: int) -> None:
        self._model = model
        self._id = completion_id
        self._created = created
        self._usage = Usage()
        #: candidates that already sent their first delta (the one carrying the role)
        self._started: set[int] = set()
        #: tool calls emitted so far per candidate: OpenAI numbers them across the whole stream
        self._calls: dict[int, int] = {}
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether a finishReason (or a prompt block) arrived: without one the stream was cut short."""
        return self._finished

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in data:
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"Gemini reported an error mid-stream: {message}", code="upstream_stream_error")
        if data.get("usageMetadata"):
            # Gemini repeats usage on many events with growing counts; the last one is the total.
            self._usage = chat.usage(data)
        candidates = data.get("candidates") or []
        chunks: list[dict[str, Any]] = []
        for position, candidate in enumerate(candidates):
            chunks.extend(self._candidate_chunks(candidate, position))
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            # Same choice as chat.chat_response: a blocked prompt is an empty, content-filtered answer.
            self._finished = True
            chunks.append(self._chunk(0, {"role": "assistant", "content": ""}, "content_filter"))
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """The closing usage chunk, shaped like OpenAI's `include_usage` one."""
        return [
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": self._usage.to_openai(),
            }
        ]

    def _candidate_chunks(self, candidate: dict[str, Any], position: int) -> list[dict[str, Any]]:
        index = candidate.get("index", position)
        first_call = self._calls.get(index, 0)
        text, reasoning, calls = chat.split_parts(candidate, index, first_call)
        delta: dict[str, Any] = {}
        if index not in self._started:
            self._started.add(index)
            delta["role"] = "assistant"
        if text:
            delta["content"] = text
        if reasoning:
            delta["reasoning_content"] = reasoning
        if calls:
            # Gemini sends each call whole, so one delta carries its id, name and complete arguments.
            delta["tool_calls"] = [{"index": first_call + offset, **call} for offset, call in enumerate(calls)]
            self._calls[index] = first_call + len(calls)
        chunks = [self._chunk(index, delta, None)] if delta else []
        reason = candidate.get("finishReason")
        if reason:
            self._finished = True
            chunks.append(self._chunk(index, {}, chat.finish_reason(reason, self._calls.get(index, 0) > 0)))
        return chunks

    def _chunk(self, index: int, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
