"""The semantic cache: a new prompt may reuse the answer of an earlier one that asks the same thing.

The last user turn is embedded and searched among earlier prompts asked in exactly the same context (alias,
system prompt, tools, parameters: `keys.context_key`). A candidate answers only if it is similar enough
(a fixed threshold, or the learned per-entry policy of `learned.py`) and the near-miss guard (`guard.py`)
finds no differing number, negation, name or swapped word. The answers themselves stay in the exact
cache's backend under their own keys; the index holds vectors and those keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sluicegate.cache.embedder import Embedder, Vector
from sluicegate.cache.guard import Signature, compatible, signature
from sluicegate.cache.index import Entry, VectorIndex
from sluicegate.cache.learned import EntryStats, LearnedPolicy

if TYPE_CHECKING:
    from sluicegate.cache.semantic_feed import SemanticFeed
    from sluicegate.cache.service import SemanticPolicy


@dataclass(slots=True)
class Prompt:
    """A prompt as the semantic cache sees it; kept on the request's cache state between lookup and store."""

    partition: str
    text: str
    vector: Vector
    signature: Signature


@dataclass(slots=True)
class Payload:
    key: str
    signature: Signature
    expires: float
    stats: EntryStats = field(default_factory=EntryStats)


@dataclass(slots=True)
class Candidate:
    """What a lookup found: `hit` says whether to answer with it; otherwise, in learned mode, the entry to
    verify against the provider's fresh answer."""

    entry: Entry
    similarity: float
    hit: bool


class SemanticCache:
    def __init__(self, embedder: Embedder, max_entries: int, learned: LearnedPolicy | None) -> None:
        self.embedder = embedder
        self.index = VectorIndex(embedder.dimensions, max_entries=max_entries)
        self.learned = learned
        #: with a Redis cache backend, the stream that keeps every replica's index in step
        self.feed: SemanticFeed | None = None

    async def prompt(self, partition: str, text: str) -> Prompt:
        vectors = await self.embedder.embed([text])
        return Prompt(partition, text, vectors[0], signature(text))

    def find(self, prompt: Prompt, policy: SemanticPolicy) -> Candidate | None:
        """The best usable candidate for `prompt`, if any."""
        now = time.monotonic()
        for similarity, entry in self.index.search(prompt.partition, prompt.vector, k=4):
            payload: Payload = entry.payload
            if payload.expires <= now:
                self.index.remove(entry)
                continue
            if policy.guard and not compatible(prompt.signature, payload.signature):
                continue
            if policy.learned and self.learned is not None:
                if similarity < 0.5:
                    return None
                explore = self.learned.should_explore(payload.stats, similarity)
                return Candidate(entry, similarity, hit=not explore)
            if similarity >= policy.threshold:
                return Candidate(entry, similarity, hit=True)
            return None  # the rest are less similar still
        return None

    def add(self, prompt: Prompt, key: str, ttl: float) -> Entry:
        entry = self.add_shared(prompt.partition, prompt.vector, prompt.signature, key, ttl)
        if self.feed is not None:
            self.feed.publish(prompt, key, ttl)
        return entry

    def add_shared(self, partition: str, vector: Vector, signature: Signature, key: str, ttl: float) -> Entry:
        """Index an entry without publishing it: another replica's, or (through `add`) this one's own.
        Learned-mode statistics stay per replica."""
        return self.index.add(partition, vector, Payload(key, signature, time.monotonic() + ttl))

    def used(self, entry: Entry) -> None:
        self.index.touch(entry)

    def forget(self, entry: Entry) -> None:
        self.index.remove(entry)

    def verify(self, candidate: Candidate, correct: bool) -> None:
        if self.learned is not None:
            self.learned.observe(candidate.entry.payload.stats, candidate.similarity, correct)

    async def same_answer(self, cached: str, fresh: str, threshold: float) -> bool:
        """Whether two answers say the same thing: equal text, or embeddings at least `threshold` similar."""
        if _normalise(cached) == _normalise(fresh):
            return True
        if not cached or not fresh:
            return False
        vectors = await self.embedder.embed([cached, fresh])
        return float(np.dot(vectors[0], vectors[1])) >= threshold


def answer_text(completion: dict[str, Any]) -> str:
    """The text (or tool calls) of a completion's first choice, for comparing answers."""
    choices = completion.get("choices") or []
    if not choices:
        return ""
    message = choices[0].get("message") or {}
    if message.get("tool_calls"):
        return " ".join(
            f"{call.get('function', {}).get('name')}({call.get('function', {}).get('arguments')})"
            for call in message["tool_calls"]
        )
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!")
