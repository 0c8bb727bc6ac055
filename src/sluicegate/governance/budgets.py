"""Budgets: an amount of USD per calendar period (UTC), enforced hard (429) or soft (a warning header).

Spend counts toward the period it was made in; periods are calendar days, ISO weeks (from Monday) and
months, in UTC, so every replica agrees on when a budget resets without talking to the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PERIODS = ("daily", "weekly", "monthly")
ENFORCEMENTS = ("hard", "soft")


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    amount_usd: float
    period: str = "monthly"
    enforce: str = "hard"

    @property
    def hard(self) -> bool:
        return self.enforce == "hard"

    def to_json(self) -> dict[str, object]:
        return {"amount_usd": self.amount_usd, "period": self.period, "enforce": self.enforce}


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """The UTC calendar period containing `now`, as epoch seconds [start, end)."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return start.timestamp(), end.timestamp()


class PeriodClock:
    """Period bounds for the current moment, recomputed only when a period ends (not per request)."""

    __slots__ = ("_bounds",)

    def __init__(self) -> None:
        self._bounds: dict[str, tuple[float, float]] = {}

    def bounds(self, period: str, now: float | None = None) -> tuple[float, float]:
        now = time.time() if now is None else now
        bounds = self._bounds.get(period)
        if bounds is None or not bounds[0] <= now < bounds[1]:
            bounds = period_bounds(period, now)
            self._bounds[period] = bounds
        return bounds


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usd(amount: float) -> str:
    """Cents for everyday amounts, more digits for the tiny ones a cheap model's requests add up to."""
    return f"${amount:,.2f}" if amount == 0 or amount >= 0.01 else f"${amount:.6f}".rstrip("0")


def budget_message(what: str, spent: float, budget: BudgetSpec, resets_at: float) -> str:
    return (
        f"Budget exceeded for {what}: {usd(spent)} spent of its {budget.period} budget of "
        f"{usd(budget.amount_usd)} ({budget.enforce} limit). The budget resets at {iso(resets_at)}."
    )
