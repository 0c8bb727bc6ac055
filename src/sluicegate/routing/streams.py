"""Opening a stream so that it can still fail over, and watching it once it is committed.

A stream is committed to a deployment when its first *content* reaches the client. Until then every
failure (bad status, no first token in time, an error event right after the role chunk, a cut) is a
failed attempt and the router tries the next deployment. So the opening reads past chunks that only
announce the answer (OpenAI's `{"role": "assistant", "content": ""}`) and holds them back with the first
real chunk.

After the commit `GuardedStream` passes chunks through as bytes, cuts a stream that stalls longer than
the inter-chunk limit, and settles the deployment's lease once, however the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from sluicegate.context import AttemptRecord
from sluicegate.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from sluicegate.providers.base import usage_from_openai_json
from sluicegate.routing.health import Lease
from sluicegate.routing.retry import upstream_status

#: chunks without content held back at most; a stream that announces itself longer than this is committed
_MAX_HELD = 8


class _Choice(msgspec.Struct):
    delta: dict[str, Any] = {}
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def is_preamble(chunk: bytes) -> bool:
    """A chunk that carries none of the answer: only a role, empty content, no finish reason."""
    try:
        choices = _chunk_decoder.decode(chunk).choices
    except msgspec.DecodeError:
        return False
    if not choices:
        # A usage chunk, or something unusual: either way it is the end or real data, so commit.
        return False
    for choice in choices:
        if choice.finish_reason is not None:
            return False
        for key, value in choice.delta.items():
            if key != "role" and value:
                return False
    return True


async def read_head(chunks: AsyncIterator[bytes], first_token: float) -> list[bytes]:
    """The chunks up to and including the first one with content. Raises (after closing `chunks`) when the
    stream fails, ends empty or brings no content within `first_token` seconds."""
    held: list[bytes] = []
    try:
        async with asyncio.timeout(first_token):
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    if held:
                        return held
                    raise UpstreamError("the provider's stream was empty", code="upstream_empty_stream") from None
                held.append(chunk)
                if len(held) >= _MAX_HELD or not is_preamble(chunk):
                    return held
    except TimeoutError:
        await close_quietly(chunks)
        raise UpstreamTimeoutError(
            f"the provider sent no first token within {first_token:g}s", code="upstream_timeout"
        ) from None
    except BaseException:
        await close_quietly(chunks)
        raise


class GuardedStream:
    """The committed rest of a stream. An async iterator with `aclose()` that settles the lease even when
    it is closed before being iterated (an async generator's cleanup would not run in that case)."""

    __slots__ = ("_chunks", "_count", "_done", "_held", "_inter_chunk", "_lease", "_tokens", "note")

    def __init__(
        self,
        held: list[bytes],
        chunks: AsyncIterator[bytes],
        lease: Lease,
        *,
        inter_chunk: float | None,
        count_tokens: bool,
    ) -> None:
        self._held = held
        self._chunks = chunks
        self._lease = lease
        self._inter_chunk = inter_chunk
        self._count = count_tokens
        self._tokens = 0
        self._done = False
        #: the attempt as recorded when the stream was committed; a late failure is written onto it
        self.note: AttemptRecord | None = None

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._held:
            return self._held.pop(0)
        if self._done:
            raise StopAsyncIteration
        try:
            if self._inter_chunk is None:
                chunk = await anext(self._chunks)
            else:
                async with asyncio.timeout(self._inter_chunk):
                    chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._done = True
            self._lease.succeed(None, tokens=self._tokens)
            raise
        except TimeoutError:
            error = UpstreamTimeoutError(
                f"the provider's stream stalled: no chunk for {self._inter_chunk:g}s", code="upstream_stream_stalled"
            )
            self._failed(error)
            await close_quietly(self._chunks)
            raise error from None
        except GatewayError as error:
            self._failed(error)
            raise
        except BaseException:
            self._done = True
            self._lease.release()
            raise
        if self._count and b'"usage"' in chunk:
            usage = usage_from_openai_json(chunk)
            if usage is not None:
                self._tokens = usage.total_tokens
        return chunk

    def _failed(self, error: GatewayError) -> None:
        self._done = True
        self._lease.fail(error, None)
        if self.note is not None:
            # The attempt was recorded as answered when the stream was committed; say how it really ended.
            self.note.status = upstream_status(error)
            self.note.error = error.code

    def __del__(self) -> None:
        # Dropped without being closed (a later step failed before iterating it): free the slot all the same.
        if not self._done:
            self._done = True
            self._lease.release()

    async def aclose(self) -> None:
        if not self._done:
            # The client left, or the gateway stopped reading: neither says anything about the deployment.
            self._done = True
            self._lease.release()
        await close_quietly(self._chunks)


async def close_quietly(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is None:
        return
    # The stream already failed or was abandoned; closing it must not mask why.
    with contextlib.suppress(Exception):
        await aclose()
