"""Admission: rate limits, concurrency and budgets decide whether a request may go ahead.

`admit` returns a ticket, entered before the request's work and exited after it, so that whatever it
reserves (a concurrency slot, estimated tokens) is released or reconciled with the real usage at the end.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sluicegate.config import Config
from sluicegate.context import RequestContext


class Ticket:
    """What an admitted request holds. The default reserves nothing, and costs nothing on the hot path."""

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        return None


_ADMIT_ALL = Ticket()


class Admission:
    def __init__(self, config: Config) -> None:
        self.config = config

    def admit(self, ctx: RequestContext, request: dict[str, Any]) -> Ticket:
        """A ticket whose `__aenter__` raises 429/403 when a limit or budget says no."""
        return _ADMIT_ALL

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
