"""One semantic index for every replica: each prompt a replica indexes is also appended to a Redis stream,
and every replica follows that stream into its own in-process index.

Searching stays in process (a lookup must not wait on the network, and plain Redis has no vector search),
so what is shared is the index's input: the prompt's vector, its near-miss guard signature, the key of its
answer (the answer itself is in the exact cache, in Redis already) and when it expires. A replica that
starts reads the stream from the beginning, so it knows every live entry; the stream is trimmed to
`cache.semantic.max_entries`, the size of the index it feeds. When Redis is unreachable each replica keeps
its own index and retries every second; what it indexes meanwhile stays its own (an outage costs other
replicas some hits, never a wrong answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from sluicegate.cache.guard import Signature

if TYPE_CHECKING:
    from sluicegate.cache.semantic import Prompt, SemanticCache

log = logging.getLogger("sluicegate.cache")

#: entries read per round trip; applying a page takes a few milliseconds of the event loop
PAGE = 200
#: how long one read waits for new entries before it asks again
BLOCK_MS = 1000


class FeedSignature(msgspec.Struct, array_like=True):
    words: list[str]
    numbers: list[str]
    negations: int
    names: list[str]


class SemanticFeed:
    def __init__(self, client: Any, stream: str, max_entries: int, model: str, timeout: float) -> None:
        self._client = client
        self.stream = stream
        self._max_entries = max_entries
        self._model = model.encode()
        self._timeout = timeout
        #: this replica's mark on its own entries, which it indexed already
        self.origin = uuid.uuid4().hex[:16].encode()
        self._cache: SemanticCache | None = None
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._failing = False
        #: entries taken from other replicas (for tests and the log)
        self.received = 0

    def follow(self, cache: SemanticCache) -> None:
        self._cache = cache
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def publish(self, prompt: Prompt, key: str, ttl: float) -> None:
        """Append an entry this replica just indexed; in the background, so a request never waits on it."""
        fields = {
            "o": self.origin,
            "m": self._model,
            "p": prompt.partition,
            "k": key,
            "x": repr(time.time() + ttl),
            "v": np.asarray(prompt.vector, dtype="<f4").tobytes(),
            "g": msgspec.msgpack.encode(_encode_signature(prompt.signature)),
        }
        task = asyncio.ensure_future(self._append(fields))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _append(self, fields: dict[str, Any]) -> None:
        try:
            adding = self._client.xadd(self.stream, fields, maxlen=self._max_entries, approximate=True)
            await asyncio.wait_for(adding, self._timeout)
        except Exception as exc:  # Redis down or slow: this entry stays on this replica only
            self._fail(exc)

    async def _follow(self) -> None:
        last = b"0-0"  # from the beginning: whatever the stream still holds is live or about to expire
        while True:
            try:
                replies = await self._client.xread({self.stream: last}, count=PAGE, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._fail(exc)
                await asyncio.sleep(1.0)
                continue
            if self._failing:
                self._failing = False
                log.info("semantic cache: following the shared index again")
            for _, entries in replies or ():
                for entry_id, fields in entries:
                    last = entry_id
                    self._apply(fields)
            await asyncio.sleep(0)  # a long catch-up must not hold the event loop

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        cache = self._cache
        if cache is None or fields.get(b"o") == self.origin or fields.get(b"m") != self._model:
            return
        try:
            expires = float(fields[b"x"]) - time.time()
            if expires <= 0:
                return
            vector = np.frombuffer(fields[b"v"], dtype="<f4").astype(np.float32)
            if vector.shape[0] != cache.index.dims and cache.index.dims:
                return
            signature = _decode_signature(msgspec.msgpack.decode(fields[b"g"], type=FeedSignature))
            cache.add_shared(fields[b"p"].decode(), vector, signature, fields[b"k"].decode(), expires)
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            log.warning("semantic cache: skipped a malformed entry of %s: %s", self.stream, exc)
            return
        self.received += 1

    def _fail(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "semantic cache: the shared index in Redis is unreachable (%s); this replica's index goes on alone",
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._writes):
            task.cancel()
        await self._client.aclose()


def _encode_signature(signature: Signature) -> FeedSignature:
    return FeedSignature(list(signature.words), list(signature.numbers), signature.negations, sorted(signature.names))


def _decode_signature(stored: FeedSignature) -> Signature:
    return Signature(tuple(stored.words), tuple(stored.numbers), stored.negations, frozenset(stored.names))
