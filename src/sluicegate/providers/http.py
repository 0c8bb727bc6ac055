"""The one HTTP client every adapter uses: a pooled aiohttp session per provider, with errors mapped once."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from sluicegate.errors import (
    GatewayError,
    UpstreamError,
    UpstreamTimeoutError,
    error_from_upstream,
)
from sluicegate.providers.base import Timeouts
from sluicegate.streaming.sse import SSEEvent, SSEParser

_MAX_ERROR_BODY = 64 * 1024
_MAX_RETRY_AFTER = 3600.0


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    """Connection pool and error mapping for one provider.

    The session is created on first use, inside the running event loop, because aiohttp binds it there.
    """

    def __init__(self, *, max_connections: int = 1000, user_agent: str = "sluicegate") -> None:
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple[float, float, float, bool], aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        loop = asyncio.get_running_loop()
        if session is None or session.closed or loop is not self._loop:
            # A session belongs to the loop it was made in; library users may call from several loops.
            self._loop = loop
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent},
                # Compression costs more CPU than it saves on these small bodies, and we stream bytes through.
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=True,
                json_serialize=lambda obj: msgspec.json.encode(obj).decode(),
            )
            self._session = session
        return session

    def _client_timeout(self, timeouts: Timeouts, streaming: bool) -> aiohttp.ClientTimeout:
        key = (timeouts.connect, timeouts.first_token, timeouts.total, streaming)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None if streaming else timeouts.total,
                sock_connect=timeouts.connect,
                sock_read=timeouts.first_token,
            )
            self._timeouts[key] = timeout
        return timeout

    @asynccontextmanager
    async def _response(
        self, url: str | URL, body: bytes, headers: Mapping[str, str], timeouts: Timeouts, streaming: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and hand over a 2xx response. A non-2xx answer, and any transport failure while the caller
        reads (connect, timeout, a body cut off), become the mapped GatewayError."""
        session = self._get_session()
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=self._client_timeout(timeouts, streaming)
            ) as response:
                if response.status >= 400:
                    payload = await response.content.read(_MAX_ERROR_BODY)
                    raise upstream_error(response.status, response.headers, payload)
                yield response
        except (GatewayError, GeneratorExit):
            raise
        except BaseException as exc:
            mapped = _transport_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def post(self, url: str | URL, body: bytes, headers: Mapping[str, str], timeouts: Timeouts) -> HttpResponse:
        """POST and read the whole answer. Pass a `yarl.URL(..., encoded=True)` to send a URL byte for byte."""
        async with self._response(url, body, headers, timeouts, streaming=False) as response:
            return HttpResponse(response.status, response.headers, await response.read())

    async def stream(
        self, url: str | URL, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST and yield server-sent events as they arrive.

        Errors before the first event (bad status, connect failure, no first byte in time) are raised from
        the first `__anext__`. `timeouts.total` bounds the whole stream.
        """
        deadline = time.monotonic() + timeouts.total
        async with self._response(url, body, headers, timeouts, streaming=True) as response:
            parser = SSEParser()
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk):
                    yield event
                if time.monotonic() > deadline:
                    raise _stream_too_long(timeouts)
            for event in parser.flush():
                yield event

    async def stream_bytes(
        self, url: str | URL, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AsyncGenerator[bytes, None]:
        """POST and yield the raw body as it arrives, for providers whose streams are not SSE."""
        deadline = time.monotonic() + timeouts.total
        async with self._response(url, body, headers, timeouts, streaming=True) as response:
            async for chunk in response.content.iter_any():
                yield chunk
                if time.monotonic() > deadline:
                    raise _stream_too_long(timeouts)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _stream_too_long(timeouts: Timeouts) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(f"stream exceeded the total timeout of {timeouts.total:g}s")


def _transport_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError("the provider did not answer in time")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("the provider's response was cut off", code="upstream_incomplete_response")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(f"could not reach the provider: {type(exc).__name__}", code="upstream_connection_error")
    return exc


def upstream_error(status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    return error_from_upstream(status, error_message(body, status), parse_retry_after(headers))


def error_message(body: bytes, status: int) -> str:
    """The human message in a provider's error body.

    OpenAI, Anthropic, Gemini, Mistral and most OpenAI-compatible servers all put it at `error.message`;
    some put a string at `error`, `message` or `detail`.
    """
    try:
        data: Any = msgspec.json.decode(body[:_MAX_ERROR_BODY])
    except msgspec.DecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return f"provider returned HTTP {status}" + (f": {text}" if text else "")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return error_message(msgspec.json.encode(data[0]), status)
    return f"provider returned HTTP {status}"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or HTTP date); capped."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(max(float(value) / 1000.0, 0.0), _MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), _MAX_RETRY_AFTER)
