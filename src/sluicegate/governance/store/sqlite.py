"""SQLite: the default store. One connection, used from one dedicated thread, so the event loop never blocks.

WAL mode with `synchronous=NORMAL`: a committed transaction survives the gateway process being killed
(the WAL is in the OS page cache); only a power cut can lose the last few commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sluicegate.governance.store.base import Row, Store, StoreUnavailable
from sluicegate.governance.store.schema import MIGRATIONS, SCHEMA_TABLE

T = TypeVar("T")


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:` -> a path for sqlite3."""
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    return path or "sluicegate.db"


class SQLiteStore(Store):
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self.description = f"SQLite database {self.path}"
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluicegate-sqlite")
        await self._run(self._connect)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        self._connection = connection
        self._migrate(connection)

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock first, so two gateways starting together apply each step once.
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(SCHEMA_TABLE)
            row = connection.execute("SELECT MAX(version) FROM sluicegate_schema").fetchone()
            version = row[0] or 0
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    connection.execute(statement.replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT"))
                connection.execute("INSERT INTO sluicegate_schema (version) VALUES (?)", [number])
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    async def _run(self, work: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable(f"the {self.description} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.description}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.OperationalError("not connected")
        return self._connection

    async def _execute(self, sql: str, args: Row = ()) -> int:
        return await self._run(lambda: self._db().execute(sql, args).rowcount)

    async def _executemany(self, sql: str, rows: list[Row]) -> None:
        def work() -> None:
            db = self._db()
            db.execute("BEGIN")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(work)

    async def _fetch(self, sql: str, args: Row = ()) -> list[Row]:
        return await self._run(lambda: self._db().execute(sql, args).fetchall())

    def _is_conflict(self, error: BaseException | None) -> bool:
        return isinstance(error, sqlite3.IntegrityError)
