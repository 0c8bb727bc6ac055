"""Authentication: the master key, and virtual keys (`sk-sg-...`) created through the admin API.

The master key comes from the config's `master_key` or, when the config has none, from the environment
variable SLUICEGATE_MASTER_KEY. Without either the gateway is open: anyone who can reach it may call it,
and `sluicegate serve` says so loudly at start-up.

Every comparison with a secret is constant-time (`hmac.compare_digest`). Keys are never logged and never
repeated in error messages.
"""

from __future__ import annotations

import hmac
import os
import time

from sluicegate.config import Config
from sluicegate.context import Principal, RequestContext
from sluicegate.errors import AuthenticationError
from sluicegate.governance.budgets import iso
from sluicegate.governance.directory import Directory
from sluicegate.governance.keys import is_virtual_key

MASTER_KEY_ENV = "SLUICEGATE_MASTER_KEY"


def master_key_of(config: Config) -> str | None:
    return config.master_key or os.environ.get(MASTER_KEY_ENV) or None


class Authenticator:
    def __init__(self, config: Config) -> None:
        master = master_key_of(config)
        self._master_key = master.encode() if master else None
        self.directory = Directory(config, has_master_key=master is not None)

    @property
    def is_open(self) -> bool:
        return self._master_key is None

    async def authenticate(self, ctx: RequestContext) -> None:
        """Set `ctx.principal`, or raise 401. The master key costs a constant-time compare; a virtual key
        an HMAC and a dictionary lookup (the database is read once per key per `key_cache_ttl`)."""
        if ctx.authenticated:
            return
        if self._master_key is None:
            ctx.authenticated = True
            return
        token = ctx.api_key
        if not token:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        if hmac.compare_digest(token.encode(), self._master_key):
            ctx.principal = Principal(key_name="master", is_admin=True)
            ctx.authenticated = True
            return
        if is_virtual_key(token):
            ctx.principal = await self._virtual(token)
            ctx.authenticated = True
            return
        raise AuthenticationError("Invalid API key")

    async def _virtual(self, token: str) -> Principal:
        record = await self.directory.find_key(token)
        if record is None:
            raise AuthenticationError("Invalid API key")
        if record.revoked_at is not None:
            raise AuthenticationError(f"The API key '{record.name}' has been revoked", code="key_revoked")
        if record.expires_at is not None and time.time() >= record.expires_at:
            raise AuthenticationError(
                f"The API key '{record.name}' expired at {iso(record.expires_at)}", code="key_expired"
            )
        return record.principal()

    async def start(self) -> None:
        await self.directory.start()

    async def aclose(self) -> None:
        await self.directory.aclose()
