"""Idempotency keys in Redis, shared by many replicas. Each key is a hash whose TTL is the lease while the
request runs and the retention once it is done; Lua scripts make every step atomic and owner-checked."""

from __future__ import annotations

from typing import Any

from sluicegate.cache.idempotency import Record
from sluicegate.cache.redis import connect

_CLAIM = """
local found = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'owner', 'body')
if found[1] then return found end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'running', 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'body', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'running' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RENEW = """
for _, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'owner') == ARGV[1] and redis.call('HGET', key, 'state') == 'running' then
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 1
"""


class RedisStore:
    def __init__(self, url: str, prefix: str, timeout: float = 2.0) -> None:
        self.client = connect(url, timeout)
        self.prefix = prefix
        self._claim = self.client.register_script(_CLAIM)
        self._complete = self.client.register_script(_COMPLETE)
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def claim(self, key: str, fingerprint: str, owner: str, lease: float) -> Record | None:
        found: Any = await self._claim(keys=[self._key(key)], args=[fingerprint, owner, _ms(lease)])
        if not found:
            return None
        fingerprint_b, state, holder, body = found
        return Record(_text(fingerprint_b), _text(state), _text(holder), body)

    async def complete(self, key: str, owner: str, body: bytes, retention: float) -> None:
        await self._complete(keys=[self._key(key)], args=[owner, body, _ms(retention)])

    async def release(self, key: str, owner: str) -> None:
        await self._release(keys=[self._key(key)], args=[owner])

    async def renew(self, keys: list[str], owner: str, lease: float) -> None:
        await self._renew(keys=[self._key(key) for key in keys], args=[owner, _ms(lease)])

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.client.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
