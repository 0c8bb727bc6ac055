"""OAuth access tokens for Vertex AI from a Google credentials file, fetched without blocking the event loop.

google-auth (the `vertex` extra) builds and signs the service account's JWT assertion; the token exchange
itself goes through the provider's own aiohttp client, because google-auth's transports are blocking. A
token is reused until five minutes before it expires, and concurrent requests wait for one refresh instead
of each starting their own. `gcloud auth application-default login` files (`authorized_user`) work too.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.base import Timeouts
from sluicegate.providers.http import HttpClient

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: refresh this long before expiry, so no request goes out with a token that dies in flight
_MARGIN = 300.0
_ASSERTION_LIFETIME = 3600


class TokenSource:
    """Access tokens for one credentials file; `token()` is what each request awaits."""

    def __init__(self, info: dict[str, Any], *, timeouts: Timeouts | None = None) -> None:
        self._info = info
        self.kind = info.get("type")
        self.token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self._timeouts = timeouts or Timeouts(connect=10.0, first_token=30.0, total=30.0)
        self._signer: Any = _signer(info) if self.kind == "service_account" else None
        if self.kind == "authorized_user":
            missing = [name for name in ("client_id", "client_secret", "refresh_token") if not info.get(name)]
            if missing:
                raise ConfigurationError(f"the Google credentials file lacks {', '.join(missing)}")
        elif self.kind != "service_account":
            raise ConfigurationError(
                f"Google credentials of type '{self.kind}' are not supported: use a service-account key or "
                "`gcloud auth application-default login`"
            )
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(cls, path: str) -> TokenSource:
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the Google credentials file {path}: {exc}") from None
        if not isinstance(info, dict):
            raise ConfigurationError(f"the Google credentials file {path} is not a JSON object")
        return cls(info)

    @property
    def project(self) -> str | None:
        value = self._info.get("project_id") or self._info.get("quota_project_id")
        return str(value) if value else None

    async def token(self, http: HttpClient) -> str:
        if self._token is not None and time.time() < self._expires - _MARGIN:
            return self._token
        async with self._lock:
            # Another request may have refreshed it while this one waited for the lock.
            if self._token is None or time.time() >= self._expires - _MARGIN:
                await self._refresh(http)
            assert self._token is not None
            return self._token

    async def _refresh(self, http: HttpClient) -> None:
        form = urlencode(self._grant()).encode()
        response = await http.post(
            self.token_uri, form, {"Content-Type": "application/x-www-form-urlencoded"}, self._timeouts
        )
        try:
            answer = msgspec.json.decode(response.body)
            token, lifetime = str(answer["access_token"]), float(answer.get("expires_in") or 3600)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                "Google's token endpoint returned no access token", code="upstream_auth_failed"
            ) from None
        self._token, self._expires = token, time.time() + lifetime

    def _grant(self) -> dict[str, str]:
        if self.kind == "authorized_user":
            return {
                "grant_type": "refresh_token",
                "client_id": self._info["client_id"],
                "client_secret": self._info["client_secret"],
                "refresh_token": self._info["refresh_token"],
            }
        return {"grant_type": _JWT_BEARER, "assertion": self.assertion()}

    def assertion(self, now: float | None = None) -> str:
        """The service account's signed JWT, which Google trades for an access token."""
        from google.auth import jwt

        encode: Any = jwt.encode  # google-auth's functions carry no type hints
        issued = int(time.time() if now is None else now)
        payload = {
            "iss": self._info["client_email"],
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + _ASSERTION_LIFETIME,
        }
        return str(encode(self._signer, payload).decode())


def _signer(info: dict[str, Any]) -> Any:
    try:
        from google.auth import crypt
    except ImportError:
        raise ConfigurationError(
            "Vertex AI with a service account needs google-auth: pip install 'sluicegate[vertex]'"
        ) from None
    missing = [name for name in ("client_email", "private_key") if not info.get(name)]
    if missing:
        raise ConfigurationError(f"the service-account key lacks {', '.join(missing)}")
    load: Any = crypt.RSASigner.from_service_account_info  # no type hints in google-auth
    try:
        return load(info)
    except ValueError as exc:
        raise ConfigurationError(f"the service-account private key cannot be read: {exc}") from None
