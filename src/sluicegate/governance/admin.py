"""The admin API's operations on keys, teams and spend: request bodies validated once, records changed in the
store, caches refreshed. The HTTP side is `sluicegate.server.routes.admin`; nothing here knows HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from sluicegate.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from sluicegate.governance.admission import Admission
from sluicegate.governance.budgets import BudgetSpec, iso
from sluicegate.governance.directory import Directory
from sluicegate.governance.keys import KeyRecord, key_hint, new_key, new_key_id
from sluicegate.governance.store import AlreadyExists, Store, StoreUnavailable
from sluicegate.governance.store.base import GROUPS
from sluicegate.governance.teams import TEAM_NAME, TeamRecord

Positive = Annotated[int, msgspec.Meta(gt=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: Annotated[float, msgspec.Meta(ge=0)]
    period: Literal["daily", "weekly", "monthly"] = "monthly"
    enforce: Literal["hard", "soft"] = "hard"


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    team: str | None = None
    models: list[str] | None = None
    rpm_limit: Positive | None = None
    tpm_limit: Positive | None = None
    max_parallel: Positive | None = None
    budget: BudgetBody | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = {}


class KeyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH: fields left out stay as they are; `null` clears one."""

    name: Name | UnsetType = UNSET
    team: str | UnsetType | None = UNSET
    models: list[str] | UnsetType | None = UNSET
    rpm_limit: Positive | UnsetType | None = UNSET
    tpm_limit: Positive | UnsetType | None = UNSET
    max_parallel: Positive | UnsetType | None = UNSET
    budget: BudgetBody | UnsetType | None = UNSET
    expires_at: datetime | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class TeamCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    models: list[str] | None = None
    rpm_limit: Positive | None = None
    tpm_limit: Positive | None = None
    max_parallel: Positive | None = None
    budget: BudgetBody | None = None
    metadata: dict[str, Any] = {}


class TeamUpdate(msgspec.Struct, forbid_unknown_fields=True):
    models: list[str] | UnsetType | None = UNSET
    rpm_limit: Positive | UnsetType | None = UNSET
    tpm_limit: Positive | UnsetType | None = UNSET
    max_parallel: Positive | UnsetType | None = UNSET
    budget: BudgetBody | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


B = TypeVar("B", bound=msgspec.Struct)


def parse(body: dict[str, Any], schema: type[B]) -> B:
    try:
        return msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).rpartition(" - at `")
        field = where.rstrip("`").removeprefix("$.") if text else None
        raise InvalidRequestError(
            f"Invalid request body: {text or exc}" + (f" (at {field})" if field else ""),
            code="invalid_body",
            param=field,
        ) from None


class AdminService:
    def __init__(self, directory: Directory, admission: Admission) -> None:
        self.directory = directory
        self.admission = admission

    @property
    def store(self) -> Store:
        if self.directory.store is None:
            raise ServiceUnavailableError("The admin API needs a database (database_url)", code="no_database")
        return self.directory.store

    # --- keys ----------------------------------------------------------------------------------

    async def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = parse(body, KeyCreate)
        key = new_key()
        now = time.time()
        record = KeyRecord(
            id=new_key_id(),
            name=spec.name,
            key_hash=self.directory.hasher.hash(key),
            key_hint=key_hint(key),
            team=_team_name(spec.team),
            models=tuple(spec.models) if spec.models is not None else None,
            rpm_limit=spec.rpm_limit,
            tpm_limit=spec.tpm_limit,
            max_parallel=spec.max_parallel,
            budget=_budget(spec.budget),
            expires_at=_epoch(spec.expires_at),
            metadata=spec.metadata,
            created_at=now,
            updated_at=now,
        )
        await _guard(self.store.insert_key(record))
        self.directory.forget_key(record)
        # The only time the clear key leaves the gateway.
        return {**record.to_public(), "key": key}

    async def list_keys(self, team: str | None) -> dict[str, Any]:
        keys = await _guard(self.store.list_keys(team))
        return {"object": "list", "data": [key.to_public() for key in keys]}

    async def get_key(self, key_id: str) -> dict[str, Any]:
        record = await self._key(key_id)
        answer = record.to_public()
        if record.budget is not None:
            start, end = self.admission.clock.bounds(record.budget.period)
            await self._flush()
            spent = await _guard(self.store.spend_total("key", record.id, start))
            answer["spend"] = {"period_start": iso(start), "resets_at": iso(end), "spent_usd": spent}
        return answer

    async def update_key(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        change = parse(body, KeyUpdate)
        record = await self._key(key_id)
        if change.name is not UNSET:
            record.name = change.name
        if change.team is not UNSET:
            record.team = _team_name(change.team)
        if change.models is not UNSET:
            record.models = tuple(change.models) if change.models is not None else None
            record.allowed = frozenset(record.models) if record.models is not None else None
        for name in ("rpm_limit", "tpm_limit", "max_parallel"):
            value = getattr(change, name)
            if value is not UNSET:
                setattr(record, name, value)
        if change.budget is not UNSET:
            record.budget = _budget(change.budget)
        if change.expires_at is not UNSET:
            record.expires_at = _epoch(change.expires_at)
        if change.metadata is not UNSET:
            record.metadata = change.metadata
        return await self._save(record)

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        record = await self._key(key_id)
        if record.revoked_at is None:
            record.revoked_at = time.time()
            return await self._save(record)
        return record.to_public()

    async def rotate_key(self, key_id: str) -> dict[str, Any]:
        """A new secret for the same key id, limits and spend; the old secret stops working."""
        record = await self._key(key_id)
        if record.revoked_at is not None:
            raise InvalidRequestError("A revoked key cannot be rotated", code="key_revoked", status=409)
        old_hash = record.key_hash
        key = new_key()
        record.key_hash = self.directory.hasher.hash(key)
        record.key_hint = key_hint(key)
        answer = await self._save(record, old_hash=old_hash)
        return {**answer, "key": key}

    async def _key(self, key_id: str) -> KeyRecord:
        record = await _guard(self.store.get_key(key_id))
        if record is None:
            raise NotFoundError(f"No key with id '{key_id}'", code="key_not_found")
        return record

    async def _save(self, record: KeyRecord, old_hash: str | None = None) -> dict[str, Any]:
        record.updated_at = time.time()
        await _guard(self.store.save_key(record))
        self.directory.forget_key(record, old_hash=old_hash)
        return record.to_public()

    # --- teams ---------------------------------------------------------------------------------

    async def create_team(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = parse(body, TeamCreate)
        now = time.time()
        team = TeamRecord(
            id=_team_name(spec.name) or "",
            models=tuple(spec.models) if spec.models is not None else None,
            rpm_limit=spec.rpm_limit,
            tpm_limit=spec.tpm_limit,
            max_parallel=spec.max_parallel,
            budget=_budget(spec.budget),
            metadata=spec.metadata,
            created_at=now,
            updated_at=now,
        )
        try:
            await _guard(self.store.insert_team(team))
        except AlreadyExists:
            raise InvalidRequestError(
                f"A team named '{team.id}' exists already", code="team_exists", status=409
            ) from None
        self.directory.forget_team(team.id)
        return team.to_public()

    async def list_teams(self) -> dict[str, Any]:
        teams = await _guard(self.store.list_teams())
        return {"object": "list", "data": [team.to_public() for team in teams]}

    async def get_team(self, name: str) -> dict[str, Any]:
        team = await self._team(name)
        answer = team.to_public()
        if team.budget is not None:
            start, end = self.admission.clock.bounds(team.budget.period)
            await self._flush()
            spent = await _guard(self.store.spend_total("team", team.id, start))
            answer["spend"] = {"period_start": iso(start), "resets_at": iso(end), "spent_usd": spent}
        return answer

    async def update_team(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        change = parse(body, TeamUpdate)
        team = await self._team(name)
        if change.models is not UNSET:
            team.models = tuple(change.models) if change.models is not None else None
            team.allowed = frozenset(team.models) if team.models is not None else None
        for field in ("rpm_limit", "tpm_limit", "max_parallel"):
            value = getattr(change, field)
            if value is not UNSET:
                setattr(team, field, value)
        if change.budget is not UNSET:
            team.budget = _budget(change.budget)
        if change.metadata is not UNSET:
            team.metadata = change.metadata
        team.updated_at = time.time()
        await _guard(self.store.save_team(team))
        self.directory.forget_team(team.id)
        return team.to_public()

    async def delete_team(self, name: str) -> dict[str, Any]:
        if not await _guard(self.store.delete_team(name)):
            raise NotFoundError(f"No team named '{name}'", code="team_not_found")
        self.directory.forget_team(name)
        return {"id": name, "object": "team", "deleted": True}

    async def _team(self, name: str) -> TeamRecord:
        team = await _guard(self.store.get_team(name))
        if team is None:
            raise NotFoundError(f"No team named '{name}'", code="team_not_found")
        return team

    # --- spend ---------------------------------------------------------------------------------

    async def spend(self, group_by: str, since: str | None, until: str | None) -> dict[str, Any]:
        if group_by not in GROUPS:
            raise InvalidRequestError(
                f"group_by must be one of {', '.join(GROUPS)}", code="invalid_group_by", param="group_by"
            )
        start = _moment(since, "from") if since else 0.0
        end = _moment(until, "to", end_of_day=True) if until else time.time() + 1.0
        await self._flush()
        rows = await _guard(self.store.spend_report(group_by, start, end))
        if group_by == "key":
            names = {key.id: key.name for key in await _guard(self.store.list_keys())}
            for row in rows:
                row["name"] = names.get(row["key"])
        return {
            "object": "spend_report",
            "group_by": group_by,
            "from": iso(start),
            "to": iso(end),
            "total_cost_usd": sum(row["cost_usd"] for row in rows),
            "requests": sum(row["requests"] for row in rows),
            "data": rows,
        }

    async def _flush(self) -> None:
        """Write this replica's waiting spend records first, so a report includes the latest requests."""
        if self.admission.spend is not None:
            await self.admission.spend.flush()


T = TypeVar("T")


async def _guard(work: Awaitable[T]) -> T:
    try:
        return await work
    except StoreUnavailable as exc:
        raise ServiceUnavailableError(
            f"The gateway's database is unavailable: {exc}", code="database_unavailable"
        ) from None


def _team_name(name: str | None) -> str | None:
    if name is not None and not TEAM_NAME.match(name):
        raise InvalidRequestError(
            "A team name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="invalid_team_name",
            param="team",
        )
    return name


def _budget(body: BudgetBody | None) -> BudgetSpec | None:
    return BudgetSpec(body.amount_usd, body.period, body.enforce) if body is not None else None


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _moment(text: str, param: str, *, end_of_day: bool = False) -> float:
    """`2026-05-01` (a whole day, UTC) or an RFC 3339 time; `to` dates include their whole day."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (moment + timedelta(days=1) if end_of_day else moment).timestamp()
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"'{param}' must be a date (2026-05-01) or an RFC 3339 time", code="invalid_time", param=param
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
