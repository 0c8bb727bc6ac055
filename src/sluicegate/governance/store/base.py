"""One interface to the governance database, whatever the engine.

The SQL is written once, with `?` placeholders, and each engine supplies four primitives (execute,
execute many, fetch, run a migration). Rows are turned into records here, so both engines hand the
rest of the gateway the same objects.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from sluicegate.governance.budgets import BudgetSpec
from sluicegate.governance.keys import KeyRecord
from sluicegate.governance.store.schema import KEY_COLUMNS, SPEND_COLUMNS, TEAM_COLUMNS
from sluicegate.governance.teams import TeamRecord

Row = Sequence[Any]

#: `group_by` of the spend report -> the column it groups on
GROUPS = {"key": "key_id", "team": "team", "model": "deployment", "alias": "alias", "day": "day"}
#: budget scopes -> the column holding their id
SCOPES = {"key": "key_id", "team": "team"}


class AlreadyExists(Exception):
    """An insert hit a unique id that is already taken."""


class StoreUnavailable(Exception):
    """The database could not be reached or refused the statement."""


class Store(ABC):
    #: how the database is named in messages: never the URL, which may hold a password
    description: str = "database"

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _execute(self, sql: str, args: Row = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def _executemany(self, sql: str, rows: list[Row]) -> None:
        """Run one statement for each row, all in one transaction."""

    @abstractmethod
    async def _fetch(self, sql: str, args: Row = ()) -> list[Row]: ...

    # --- keys ----------------------------------------------------------------------------------

    async def insert_key(self, key: KeyRecord) -> None:
        placeholders = ", ".join("?" * 15)
        await self._insert(f"INSERT INTO sluicegate_keys ({KEY_COLUMNS}) VALUES ({placeholders})", _key_row(key))

    async def save_key(self, key: KeyRecord) -> None:
        row = _key_row(key)
        await self._execute(
            "UPDATE sluicegate_keys SET name = ?, key_hash = ?, key_hint = ?, team = ?, models = ?, rpm_limit = ?, "
            "tpm_limit = ?, max_parallel = ?, budget = ?, expires_at = ?, metadata = ?, created_at = ?, "
            "updated_at = ?, revoked_at = ? WHERE id = ?",
            [*row[1:], row[0]],
        )

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM sluicegate_keys WHERE id = ?", [key_id])
        return _key(rows[0]) if rows else None

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM sluicegate_keys WHERE key_hash = ?", [key_hash])
        return _key(rows[0]) if rows else None

    async def list_keys(self, team: str | None = None) -> list[KeyRecord]:
        if team is None:
            rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM sluicegate_keys ORDER BY created_at")
        else:
            rows = await self._fetch(
                f"SELECT {KEY_COLUMNS} FROM sluicegate_keys WHERE team = ? ORDER BY created_at", [team]
            )
        return [_key(row) for row in rows]

    # --- teams ---------------------------------------------------------------------------------

    async def insert_team(self, team: TeamRecord) -> None:
        placeholders = ", ".join("?" * 9)
        await self._insert(f"INSERT INTO sluicegate_teams ({TEAM_COLUMNS}) VALUES ({placeholders})", _team_row(team))

    async def save_team(self, team: TeamRecord) -> None:
        row = _team_row(team)
        await self._execute(
            "UPDATE sluicegate_teams SET models = ?, rpm_limit = ?, tpm_limit = ?, max_parallel = ?, budget = ?, "
            "metadata = ?, created_at = ?, updated_at = ? WHERE id = ?",
            [*row[1:], row[0]],
        )

    async def get_team(self, name: str) -> TeamRecord | None:
        rows = await self._fetch(f"SELECT {TEAM_COLUMNS} FROM sluicegate_teams WHERE id = ?", [name])
        return _team(rows[0]) if rows else None

    async def list_teams(self) -> list[TeamRecord]:
        return [_team(row) for row in await self._fetch(f"SELECT {TEAM_COLUMNS} FROM sluicegate_teams ORDER BY id")]

    async def delete_team(self, name: str) -> bool:
        return await self._execute("DELETE FROM sluicegate_teams WHERE id = ?", [name]) > 0

    # --- spend ---------------------------------------------------------------------------------

    async def insert_spend(self, rows: list[Row]) -> None:
        placeholders = ", ".join("?" * 23)
        await self._executemany(f"INSERT INTO sluicegate_spend ({SPEND_COLUMNS}) VALUES ({placeholders})", rows)

    async def spend_total(self, scope: str, ident: str, since: float) -> float:
        column = SCOPES[scope]
        rows = await self._fetch(
            f"SELECT COALESCE(SUM(cost_usd), 0) FROM sluicegate_spend WHERE {column} = ? AND ts >= ?", [ident, since]
        )
        return float(rows[0][0]) if rows else 0.0

    async def spend_count(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM sluicegate_spend")
        return int(rows[0][0])

    async def spend_report(self, group_by: str, since: float, until: float) -> list[dict[str, Any]]:
        column = GROUPS[group_by]
        rows = await self._fetch(
            f"SELECT {column}, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            f"COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0), "
            f"SUM(usage_estimated) FROM sluicegate_spend WHERE ts >= ? AND ts < ? GROUP BY {column} ORDER BY {column}",
            [since, until],
        )
        return [
            {
                group_by: row[0],
                "requests": int(row[1]),
                "prompt_tokens": int(row[2]),
                "completion_tokens": int(row[3]),
                "cached_tokens": int(row[4]),
                "reasoning_tokens": int(row[5]),
                "cost_usd": float(row[6]),
                "estimated_requests": int(row[7] or 0),
            }
            for row in rows
        ]

    async def _insert(self, sql: str, row: Row) -> None:
        try:
            await self._execute(sql, row)
        except StoreUnavailable as exc:
            if self._is_conflict(exc.__cause__):
                raise AlreadyExists from None
            raise

    def _is_conflict(self, error: BaseException | None) -> bool:
        return False


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _budget(text: str | None) -> BudgetSpec | None:
    if not text:
        return None
    data = json.loads(text)
    return BudgetSpec(float(data["amount_usd"]), data["period"], data["enforce"])


def _key_row(key: KeyRecord) -> list[Any]:
    return [
        key.id,
        key.name,
        key.key_hash,
        key.key_hint,
        key.team,
        _json(list(key.models) if key.models is not None else None),
        key.rpm_limit,
        key.tpm_limit,
        key.max_parallel,
        _json(key.budget.to_json() if key.budget else None),
        _float(key.expires_at),
        _json(key.metadata) or "{}",
        float(key.created_at),
        float(key.updated_at),
        _float(key.revoked_at),
    ]


def _key(row: Row) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        name=row[1],
        key_hash=row[2],
        key_hint=row[3],
        team=row[4],
        models=tuple(json.loads(row[5])) if row[5] is not None else None,
        rpm_limit=row[6],
        tpm_limit=row[7],
        max_parallel=row[8],
        budget=_budget(row[9]),
        expires_at=row[10],
        metadata=json.loads(row[11]),
        created_at=row[12],
        updated_at=row[13],
        revoked_at=row[14],
    )


def _team_row(team: TeamRecord) -> list[Any]:
    return [
        team.id,
        _json(list(team.models) if team.models is not None else None),
        team.rpm_limit,
        team.tpm_limit,
        team.max_parallel,
        _json(team.budget.to_json() if team.budget else None),
        _json(team.metadata) or "{}",
        float(team.created_at),
        float(team.updated_at),
    ]


def _team(row: Row) -> TeamRecord:
    return TeamRecord(
        id=row[0],
        models=tuple(json.loads(row[1])) if row[1] is not None else None,
        rpm_limit=row[2],
        tpm_limit=row[3],
        max_parallel=row[4],
        budget=_budget(row[5]),
        metadata=json.loads(row[6]),
        created_at=row[7],
        updated_at=row[8],
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
