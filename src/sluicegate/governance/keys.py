"""Virtual keys: how they look, how they are stored (hashed), and the record the gateway keeps for each.

A key is `sk-sg-` followed by 256 random bits. Only an HMAC-SHA256 of it (keyed with a server-side pepper)
is stored: the clear key is shown once, when it is created or rotated. Because the key itself is random
and long, the hash cannot be reversed by guessing, and looking it up by hash leaks nothing useful.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sluicegate.context import Principal
from sluicegate.governance.budgets import BudgetSpec, iso

KEY_PREFIX = "sk-sg-"
#: used when the config sets no `governance.key_pepper`; a pepper only adds defence in depth here
_DEFAULT_PEPPER = b"sluicegate-virtual-key-v1"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def key_hint(key: str) -> str:
    """What the admin API shows instead of the key: enough to tell keys apart, useless to an attacker."""
    return f"{KEY_PREFIX}...{key[-4:]}"


def is_virtual_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


class KeyHasher:
    def __init__(self, pepper: str | None = None) -> None:
        self._pepper = pepper.encode() if pepper else _DEFAULT_PEPPER

    def hash(self, key: str) -> str:
        return hmac.digest(self._pepper, key.encode(), "sha256").hex()


@dataclass(slots=True)
class KeyRecord:
    id: str
    name: str
    key_hash: str
    key_hint: str
    team: str | None = None
    #: aliases this key may call; None means all
    models: tuple[str, ...] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    budget: BudgetSpec | None = None
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    revoked_at: float | None = None
    #: built once per record, not per request
    allowed: frozenset[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.allowed = frozenset(self.models) if self.models is not None else None

    @property
    def has_limits(self) -> bool:
        return bool(self.rpm_limit or self.tpm_limit or self.max_parallel or self.budget)

    def principal(self) -> Principal:
        return Principal(
            key_id=self.id, key_name=self.name, team=self.team, models=self.allowed, metadata=self.metadata
        )

    def to_public(self) -> dict[str, Any]:
        """The admin API's view: everything but the hash."""
        return {
            "id": self.id,
            "object": "key",
            "name": self.name,
            "key_hint": self.key_hint,
            "team": self.team,
            "models": list(self.models) if self.models is not None else None,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "max_parallel": self.max_parallel,
            "budget": self.budget.to_json() if self.budget else None,
            "expires_at": iso(self.expires_at) if self.expires_at is not None else None,
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "revoked": self.revoked_at is not None,
            "revoked_at": iso(self.revoked_at) if self.revoked_at is not None else None,
        }
