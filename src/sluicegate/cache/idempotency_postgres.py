"""Idempotency keys in PostgreSQL, shared by many replicas (asyncpg, from the `postgres` extra).

A claim is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`: it either takes a free (or expired) key
or leaves the live row alone, atomically, so two replicas can never both run the same key.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sluicegate.cache.idempotency import DONE, RUNNING, Record
from sluicegate.errors import ConfigurationError


class PostgresStore:
    def __init__(self, url: str, table: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"idempotency.prefix '{table}' is not a valid table name")
        self.url = url
        self.table = table
        self._pool: Any = None

    async def start(self) -> None:
        try:
            import asyncpg  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "the postgres idempotency store needs asyncpg: pip install 'sluicegate[postgres]'"
            ) from None
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4, command_timeout=5)
        await self._pool.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "state TEXT NOT NULL, owner TEXT NOT NULL, body BYTEA, expires DOUBLE PRECISION NOT NULL)"
        )
        await self._pool.execute(f"DELETE FROM {self.table} WHERE expires <= $1", time.time())

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def claim(self, key: str, fingerprint: str, owner: str, lease: float) -> Record | None:
        now = time.time()
        taken = await self._pool.fetchval(
            f"INSERT INTO {self.table} AS t (key, fingerprint, state, owner, body, expires) "
            "VALUES ($1, $2, $3, $4, NULL, $5) "
            "ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, "
            "owner = EXCLUDED.owner, body = NULL, expires = EXCLUDED.expires WHERE t.expires <= $6 "
            "RETURNING owner",
            key,
            fingerprint,
            RUNNING,
            owner,
            now + lease,
            now,
        )
        if taken is not None:
            return None
        row = await self._pool.fetchrow(f"SELECT fingerprint, state, owner, body FROM {self.table} WHERE key = $1", key)
        if row is None:  # expired and purged between the two statements: try once more
            return await self.claim(key, fingerprint, owner, lease)
        return Record(row["fingerprint"], row["state"], row["owner"], row["body"])

    async def complete(self, key: str, owner: str, body: bytes, retention: float) -> None:
        await self._pool.execute(
            f"UPDATE {self.table} SET state = $1, body = $2, expires = $3 WHERE key = $4 AND owner = $5",
            DONE,
            body,
            time.time() + retention,
            key,
            owner,
        )

    async def release(self, key: str, owner: str) -> None:
        await self._pool.execute(
            f"DELETE FROM {self.table} WHERE key = $1 AND owner = $2 AND state = $3", key, owner, RUNNING
        )

    async def renew(self, keys: list[str], owner: str, lease: float) -> None:
        await self._pool.execute(
            f"UPDATE {self.table} SET expires = $1 WHERE key = ANY($2::text[]) AND owner = $3 AND state = $4",
            time.time() + lease,
            keys,
            owner,
            RUNNING,
        )
