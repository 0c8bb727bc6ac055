"""Authentication: the master key today; virtual keys plug in here."""

from __future__ import annotations

import hmac

from sluicegate.config import Config
from sluicegate.context import Principal, RequestContext
from sluicegate.errors import AuthenticationError


class Authenticator:
    def __init__(self, config: Config) -> None:
        self._master_key = config.master_key.encode() if config.master_key else None

    @property
    def is_open(self) -> bool:
        return self._master_key is None

    async def authenticate(self, ctx: RequestContext) -> None:
        """Set `ctx.principal`, or raise 401. Cheap on the hot path: a constant-time compare."""
        if ctx.authenticated:
            return
        if self._master_key is None:
            ctx.authenticated = True
            return
        if not ctx.api_key:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        if not hmac.compare_digest(ctx.api_key.encode(), self._master_key):
            raise AuthenticationError("Invalid API key")
        ctx.principal = Principal(key_name="master", is_admin=True)
        ctx.authenticated = True

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
