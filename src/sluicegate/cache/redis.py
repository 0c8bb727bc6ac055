"""Redis for the exact cache of many replicas, and the breaker that keeps a sick Redis off the request path.

A Redis that is down or slow must never fail a request or make it wait long: every round trip has a
deadline (`cache.timeout`, 50 ms by default; commands in flight together share one, see autopipe.py), and
after a failure the cache skips Redis for a short back-off, so requests go on uncached at full speed
instead of each paying the timeout. The first call after the back-off tries again on a new connection, so
the cache recovers without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sluicegate.errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("sluicegate.cache")

T = TypeVar("T")


def connect(url: str, timeout: float) -> Redis:
    try:
        from redis.asyncio import Redis
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError("a Redis backend needs the redis package: pip install 'sluicegate[redis]'") from None
    # No client-side retries: a retry would multiply the time a dead Redis costs each request.
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False)


class Breaker:
    """Skip a failing dependency for `backoff` seconds after each failure; say so once, not per request."""

    def __init__(self, what: str, backoff: float = 1.0) -> None:
        self.what = what
        self.backoff = backoff
        self._open_until = 0.0
        self._failing = False

    @property
    def available(self) -> bool:
        return self._open_until <= time.monotonic()

    async def call(self, operation: Callable[[], Awaitable[T]], default: T) -> T:
        """`operation()` unless the breaker is open; a failure opens it. The deadline is the operation's
        own (the auto-pipeline's, one per batch)."""
        if not self.available:
            return default
        try:
            result = await operation()
        except (TimeoutError, OSError, ConnectionError) as exc:
            return self._fail(exc, default)
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            return self._fail(exc, default)
        if self._failing:
            self._failing = False
            log.info("%s is back; caching again", self.what)
        return result

    def _fail(self, exc: BaseException, default: T) -> T:
        self._open_until = time.monotonic() + self.backoff
        if not self._failing:
            self._failing = True
            log.warning(
                "%s failed (%s); serving uncached, retrying every %.0fs",
                self.what,
                type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
                self.backoff,
            )
        return default


def _is_redis_error(exc: BaseException) -> bool:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RedisError)


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.client = connect(url, timeout)
        try:
            from sluicegate.autopipe import AutoPipeline
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError("the Redis cache needs hiredis: pip install 'sluicegate[redis]'") from None
        # Commands go through the auto-pipeline: a lookup costs ~6 µs of CPU instead of ~67 (docs/caching.md).
        self.pipe = AutoPipeline(self.client, timeout)
        self.breaker = Breaker(f"the cache's Redis at {_safe(url)}")

    async def get(self, key: str) -> bytes | None:
        value: Any = await self.breaker.call(lambda: self.pipe.call("GET", key), None)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl > 0:
            milliseconds = max(1, int(ttl * 1000))
            await self.breaker.call(lambda: self.pipe.call("SET", key, value, "PX", milliseconds), None)

    async def delete(self, key: str) -> None:
        await self.breaker.call(lambda: self.pipe.call("DEL", key), None)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.pipe.aclose()
        await self.client.aclose()


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return scheme + sep + rest
