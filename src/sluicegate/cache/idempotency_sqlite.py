"""Idempotency keys in a SQLite file: the default, durable across restarts of a single host.

The standard sqlite3 module runs on one dedicated thread (a connection belongs to its thread, and one
writer is all SQLite allows anyway), so the event loop never blocks on the disk. WAL mode lets several
gateway processes on the host share the file; `BEGIN IMMEDIATE` makes a claim atomic between them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sluicegate.cache.idempotency import DONE, RUNNING, Record

T = TypeVar("T")
_PURGE_EVERY = 300.0


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or a plain path."""
    return url.removeprefix("sqlite://").removeprefix("/") if url.startswith("sqlite://") else url


class SQLiteStore:
    def __init__(self, url: str, table: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"idempotency.prefix '{table}' is not a valid table name")
        self.path = sqlite_path(url)
        self.table = table
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluicegate-idempotency")
        self._db: sqlite3.Connection | None = None
        self._purged = 0.0

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, work)

    def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            self._db = self._open()
        return work(self._db)

    def _open(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the case idempotency exists for); FULL adds an fsync
        # per commit for power loss as well.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "state TEXT NOT NULL, owner TEXT NOT NULL, body BLOB, expires REAL NOT NULL)"
        )
        return db

    async def start(self) -> None:
        # The file is opened at the first Idempotency-Key, so a gateway nobody sends one to creates no file.
        return None

    async def aclose(self) -> None:
        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(close)
        self._executor.shutdown(wait=True)

    async def claim(self, key: str, fingerprint: str, owner: str, lease: float) -> Record | None:
        table = self.table

        def claim(db: sqlite3.Connection) -> Record | None:
            now = time.time()
            self._purge(db, now)
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    f"SELECT fingerprint, state, owner, body FROM {table} WHERE key = ? AND expires > ?", (key, now)
                ).fetchone()
                if row is None:
                    db.execute(
                        f"INSERT OR REPLACE INTO {table} (key, fingerprint, state, owner, body, expires) "
                        "VALUES (?, ?, ?, ?, NULL, ?)",
                        (key, fingerprint, RUNNING, owner, now + lease),
                    )
            finally:
                db.execute("COMMIT")
            return None if row is None else Record(row[0], row[1], row[2], row[3])

        return await self._run(claim)

    async def complete(self, key: str, owner: str, body: bytes, retention: float) -> None:
        sql = f"UPDATE {self.table} SET state = ?, body = ?, expires = ? WHERE key = ? AND owner = ?"
        await self._run(lambda db: db.execute(sql, (DONE, body, time.time() + retention, key, owner)))

    async def release(self, key: str, owner: str) -> None:
        sql = f"DELETE FROM {self.table} WHERE key = ? AND owner = ? AND state = ?"
        await self._run(lambda db: db.execute(sql, (key, owner, RUNNING)))

    async def renew(self, keys: list[str], owner: str, lease: float) -> None:
        sql = f"UPDATE {self.table} SET expires = ? WHERE key = ? AND owner = ? AND state = ?"

        def renew(db: sqlite3.Connection) -> None:
            expires = time.time() + lease
            db.executemany(sql, [(expires, key, owner, RUNNING) for key in keys])

        await self._run(renew)

    def _purge(self, db: sqlite3.Connection, now: float) -> None:
        if now - self._purged > _PURGE_EVERY:
            self._purged = now
            db.execute(f"DELETE FROM {self.table} WHERE expires <= ?", (now,))
