"""The response cache as the lifecycle sees it: look up before routing, store after success."""

from __future__ import annotations

from typing import Any

from sluicegate.config import Config
from sluicegate.context import RequestContext
from sluicegate.providers.base import ChatResult


class ResponseCache:
    def __init__(self, config: Config) -> None:
        self.config = config

    async def lookup(self, request: dict[str, Any], ctx: RequestContext) -> ChatResult | None:
        return None

    async def store(self, request: dict[str, Any], result: ChatResult, ctx: RequestContext) -> None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
