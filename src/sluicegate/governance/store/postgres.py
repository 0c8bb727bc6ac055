"""PostgreSQL through asyncpg (the `postgres` extra): a small pool, statements prepared by the driver.

The tables go to the first schema of the connection's search path; put `?search_path=NAME` on the URL
to keep them apart from other applications' tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sluicegate.errors import ConfigurationError
from sluicegate.governance.store.base import Row, Store, StoreUnavailable
from sluicegate.governance.store.schema import MIGRATIONS, SCHEMA_TABLE

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

#: any number: the lock only has to be the same for every gateway migrating the same database
_MIGRATION_LOCK = 0x5179CE6A7E


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the SQL here never has `?` inside a literal)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self.description = "PostgreSQL database"
        self._pool: asyncpg.Pool | None = None
        self._sql: dict[str, str] = {}

    async def open(self) -> None:
        try:
            import asyncpg
        except ImportError:
            raise ConfigurationError(
                "database_url is a PostgreSQL URL but asyncpg is not installed: pip install 'sluicegate[postgres]'"
            ) from None
        self._errors: tuple[type[BaseException], ...] = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)
        self._conflict = asyncpg.UniqueViolationError
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await connection.execute(SCHEMA_TABLE)
                version = await connection.fetchval("SELECT MAX(version) FROM sluicegate_schema") or 0
                for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in statements:
                        await connection.execute(statement.replace("{id}", "BIGSERIAL PRIMARY KEY"))
                    await connection.execute("INSERT INTO sluicegate_schema (version) VALUES ($1)", number)
        except self._errors as exc:
            raise StoreUnavailable(f"cannot open the {self.description}: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _prepare(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = numbered(sql)
        return converted

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable(f"the {self.description} is not open")
        return self._pool

    async def _execute(self, sql: str, args: Row = ()) -> int:
        try:
            status: str = await self._ready().execute(self._prepare(sql), *args)
        except self._errors as exc:
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc
        # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count is the last word
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _executemany(self, sql: str, rows: list[Row]) -> None:
        try:
            async with self._ready().acquire() as connection, connection.transaction():
                await connection.executemany(self._prepare(sql), rows)
        except self._errors as exc:
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, sql: str, args: Row = ()) -> list[Row]:
        try:
            records: list[Any] = await self._ready().fetch(self._prepare(sql), *args)
        except self._errors as exc:
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc
        return [tuple(record) for record in records]

    def _is_conflict(self, error: BaseException | None) -> bool:
        return isinstance(error, self._conflict)
