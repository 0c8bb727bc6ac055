"""Teams: a name that keys point at, with limits and a budget all of the team's keys share.

A key may name a team that has no record: the name then only groups spend. Once a team record exists,
its limits and budget apply to every key that names it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from sluicegate.governance.budgets import BudgetSpec, iso

TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(slots=True)
class TeamRecord:
    #: the team's name is its id: keys refer to it by name
    id: str
    models: tuple[str, ...] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    budget: BudgetSpec | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    allowed: frozenset[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.allowed = frozenset(self.models) if self.models is not None else None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "team",
            "name": self.id,
            "models": list(self.models) if self.models is not None else None,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "max_parallel": self.max_parallel,
            "budget": self.budget.to_json() if self.budget else None,
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
