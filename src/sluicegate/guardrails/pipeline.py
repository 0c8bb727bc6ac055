"""The guardrail pipeline the gateway calls on input, on complete answers and on streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sluicegate.config import Config
from sluicegate.context import RequestContext
from sluicegate.providers.base import ChatResult


class GuardrailPipeline:
    def __init__(self, config: Config) -> None:
        self.config = config

    def enabled_for(self, ctx: RequestContext, alias: str) -> bool:
        return False

    async def check_input(self, request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Return the request to send (possibly redacted), or raise a 400 naming the guardrail."""
        return request

    async def check_output(self, request: dict[str, Any], result: ChatResult, ctx: RequestContext) -> ChatResult:
        return result

    def check_stream(
        self, request: dict[str, Any], chunks: AsyncIterator[bytes], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        return chunks
