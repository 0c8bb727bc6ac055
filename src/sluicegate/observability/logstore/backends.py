"""The two databases the log store speaks: SQLite (default) and PostgreSQL (asyncpg, the `postgres` extra).

Both offer the same four operations to the store: create the schema, write a batch (rows and rollups in one
transaction), fetch, execute. SQLite runs in dedicated threads (one writer, one reader: WAL lets reads go on
while a batch is written) so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from sluicegate.config import ConfigError
from sluicegate.observability.logstore import schema

Batch = tuple[list[schema.LogRow], list[tuple[str, list[tuple[object, ...]]]]]


class Backend(Protocol):
    dialect: str

    async def open(self) -> None: ...

    async def write(self, batch: Batch) -> None: ...

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int: ...

    async def close(self) -> None: ...


def open_backend(url: str) -> Backend:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return SqliteBackend(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        return PostgresBackend(url)
    raise ConfigError(f"observability.log_store: unsupported database URL scheme '{scheme}' (use sqlite or postgresql)")


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute/path.db`, as SQLAlchemy writes them."""
    path = unquote(url.removeprefix("sqlite://"))
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ConfigError("observability.log_store: SQLite needs a file path (sqlite:///sluicegate.db)")
    return path


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sluicegate-logstore-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sluicegate-logstore-read")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL loses at most the last transactions on power loss, never corrupts: right for logs.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    async def _run_write(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _run_read(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
        await self._run_write(self._open_writer)
        await self._run_read(self._open_reader)

    def _open_writer(self) -> None:
        conn = self._write_conn = self._connect()
        for statement in schema.ddl("INTEGER PRIMARY KEY AUTOINCREMENT"):
            conn.execute(statement)

    def _open_reader(self) -> None:
        self._read_conn = self._connect()
        self._read_conn.execute("PRAGMA query_only=ON")

    async def write(self, batch: Batch) -> None:
        await self._run_write(self._write, batch)

    def _write(self, batch: Batch) -> None:
        conn = self._write_conn
        assert conn is not None
        rows, upserts = batch
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(schema.insert_logs_sql(), rows)
            for sql, values in upserts:
                conn.executemany(sql, values)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = await self._run_read(self._fetch, sql, params)
        return result

    def _fetch(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        assert self._read_conn is not None
        return self._read_conn.execute(sql, tuple(params)).fetchall()

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        count: int = await self._run_write(self._execute, sql, params)
        return count

    def _execute(self, sql: str, params: Sequence[object]) -> int:
        assert self._write_conn is not None
        return self._write_conn.execute(sql, tuple(params)).rowcount

    async def close(self) -> None:
        for executor, attr in ((self._writer, "_write_conn"), (self._reader, "_read_conn")):
            conn = getattr(self, attr)
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
                setattr(self, attr, None)
            executor.shutdown(wait=False)


_PLACEHOLDER = re.compile(r"\?")


def search_path_schema(url: str) -> str | None:
    values = parse_qs(urlparse(url).query).get("search_path")
    if not values:
        return None
    first = values[0].split(",")[0].strip().strip('"')
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", first):
        raise ConfigError("observability.log_store: search_path must name a schema with letters, digits and _")
    return first


def to_postgres(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        #: `?search_path=NAME` on the URL (the convention the governance store follows too) puts the tables in
        #: their own schema, created here when missing
        self.search_path = search_path_schema(url)
        self._pool: Any = None
        self._sql: dict[str, str] = {}

    def _convert(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = to_postgres(sql)
        return converted

    async def open(self) -> None:
        try:
            # Imported by name: asyncpg is optional (the `postgres` extra) and ships no type hints.
            asyncpg: Any = importlib.import_module("asyncpg")
        except ImportError:
            raise ConfigError(
                "observability.log_store: PostgreSQL needs asyncpg: pip install 'sluicegate[postgres]'"
            ) from None
        settings = {"application_name": "sluicegate-logstore"}
        if self.search_path:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.search_path}"')
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=4, server_settings=settings, command_timeout=60
        )
        # Several gateways may start at once: serialise the CREATE statements.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(774411)")
            for statement in schema.ddl("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", "BIGINT"):
                await conn.execute(statement)

    async def write(self, batch: Batch) -> None:
        rows, upserts = batch
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.copy_records_to_table(schema.LOGS, records=rows, columns=schema.LOG_COLUMN_NAMES)
            for sql, values in upserts:
                await conn.executemany(self._convert(sql), values)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as conn:
            records = await conn.fetch(self._convert(sql), *params)
        return [tuple(record) for record in records]

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._convert(sql), *params)
        # asyncpg answers with the command tag, e.g. "DELETE 42"
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
