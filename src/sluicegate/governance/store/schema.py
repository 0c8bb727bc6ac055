"""The tables governance keeps, as numbered migrations that both SQLite and PostgreSQL run.

A migration is a list of statements; `{id}` stands for the dialect's auto-increment primary key. The
version reached is kept in `sluicegate_schema`, so a newer gateway upgrades an older database in place
and two gateways starting at once do not both apply a step (PostgreSQL takes an advisory lock, SQLite
an immediate transaction).
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS sluicegate_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            key_hint TEXT NOT NULL,
            team TEXT,
            models TEXT,
            rpm_limit BIGINT,
            tpm_limit BIGINT,
            max_parallel BIGINT,
            budget TEXT,
            expires_at DOUBLE PRECISION,
            metadata TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""",
        "CREATE INDEX IF NOT EXISTS sluicegate_keys_team ON sluicegate_keys (team)",
        """CREATE TABLE IF NOT EXISTS sluicegate_teams (
            id TEXT PRIMARY KEY,
            models TEXT,
            rpm_limit BIGINT,
            tpm_limit BIGINT,
            max_parallel BIGINT,
            budget TEXT,
            metadata TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS sluicegate_spend (
            id {id},
            request_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            day TEXT NOT NULL,
            key_id TEXT,
            team TEXT,
            alias TEXT,
            deployment TEXT,
            provider TEXT,
            endpoint TEXT,
            stream INTEGER NOT NULL,
            status INTEGER NOT NULL,
            error_code TEXT,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cached_tokens BIGINT NOT NULL,
            cache_creation_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            cost_usd DOUBLE PRECISION,
            usage_estimated INTEGER NOT NULL,
            cancelled INTEGER NOT NULL,
            cache TEXT,
            latency_ms DOUBLE PRECISION NOT NULL,
            ttft_ms DOUBLE PRECISION
        )""",
        "CREATE INDEX IF NOT EXISTS sluicegate_spend_ts ON sluicegate_spend (ts)",
        "CREATE INDEX IF NOT EXISTS sluicegate_spend_key ON sluicegate_spend (key_id, ts)",
        "CREATE INDEX IF NOT EXISTS sluicegate_spend_team ON sluicegate_spend (team, ts)",
    ],
]

SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS sluicegate_schema (version INTEGER NOT NULL)"

KEY_COLUMNS = (
    "id, name, key_hash, key_hint, team, models, rpm_limit, tpm_limit, max_parallel, budget, expires_at, "
    "metadata, created_at, updated_at, revoked_at"
)
TEAM_COLUMNS = "id, models, rpm_limit, tpm_limit, max_parallel, budget, metadata, created_at, updated_at"
SPEND_COLUMNS = (
    "request_id, ts, day, key_id, team, alias, deployment, provider, endpoint, stream, status, error_code, "
    "prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens, cost_usd, "
    "usage_estimated, cancelled, cache, latency_ms, ttft_ms"
)
