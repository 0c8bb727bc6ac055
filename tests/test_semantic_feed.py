"""What a replica takes from the shared semantic stream, and what it refuses (no Redis needed: `_apply`)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from sluicegate.cache.guard import signature
from sluicegate.cache.semantic import SemanticCache
from sluicegate.cache.semantic_feed import FeedSignature, SemanticFeed

MODEL = "minilm-l6/4"


@pytest.fixture
def cache() -> SemanticCache:
    embedder = SimpleNamespace(name="minilm-l6", dimensions=4)
    return SemanticCache(embedder, max_entries=100, learned=None)  # type: ignore[arg-type]


def _feed(cache: SemanticCache) -> SemanticFeed:
    feed = SemanticFeed(client=None, stream="s", max_entries=100, model=MODEL, timeout=1.0)
    feed._cache = cache
    return feed


def _fields(**overrides: Any) -> dict[bytes, bytes]:
    sig = signature("What is the capital of France?")
    stored = FeedSignature(list(sig.words), list(sig.numbers), sig.negations, sorted(sig.names))
    fields = {
        b"o": b"another-replica",
        b"m": MODEL.encode(),
        b"p": b"context-1",
        b"k": b"answer-key",
        b"x": repr(time.time() + 60).encode(),
        b"v": np.array([1, 0, 0, 0], dtype="<f4").tobytes(),
        b"g": msgspec.msgpack.encode(stored),
    }
    fields.update({key.encode(): value for key, value in overrides.items()})
    return fields


def test_an_entry_of_another_replica_is_indexed_with_its_guard_signature(cache: SemanticCache) -> None:
    feed = _feed(cache)
    feed._apply(_fields())
    assert feed.received == 1
    [(similarity, entry)] = cache.index.search("context-1", np.array([1, 0, 0, 0], dtype=np.float32), k=1)
    assert similarity == pytest.approx(1.0)
    assert entry.payload.key == "answer-key"
    assert entry.payload.signature == signature("What is the capital of France?")
    assert 50 < entry.payload.expires - time.monotonic() <= 60


@pytest.mark.parametrize("case", ["own", "other model", "expired", "wrong dimensions"])
def test_own_foreign_expired_and_misshapen_entries_are_skipped(cache: SemanticCache, case: str) -> None:
    feed = _feed(cache)
    overrides = {
        "own": {"o": feed.origin},  # this replica indexed it already
        "other model": {"m": b"other-model/384"},  # a replica with another model: its vectors mean something else
        "expired": {"x": repr(time.time() - 1).encode()},
        "wrong dimensions": {"v": np.zeros(3, dtype="<f4").tobytes()},
    }[case]
    feed._apply(_fields(**overrides))
    assert feed.received == 0 and len(cache.index) == 0


def test_a_malformed_entry_is_logged_and_skipped(cache: SemanticCache, caplog: pytest.LogCaptureFixture) -> None:
    feed = _feed(cache)
    feed._apply(_fields(g=b"\xc1 not msgpack"))
    feed._apply({b"o": b"x", b"m": MODEL.encode()})  # fields missing
    assert feed.received == 0 and len(cache.index) == 0
    assert caplog.text.count("skipped a malformed entry") == 2
