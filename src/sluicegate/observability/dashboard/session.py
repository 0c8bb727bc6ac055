"""Dashboard sessions: the login form takes the master key once and answers with a signed, HttpOnly cookie.

The cookie holds only an expiry time and an HMAC of it, keyed by a hash of the master key: nothing to steal
that outlives the session, valid on every worker process and replica that shares the master key, and void
as soon as the master key changes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "sluicegate_ui"
LIFETIME = 12 * 3600


class Sessions:
    def __init__(self, master_key: str | None, lifetime: int = LIFETIME) -> None:
        self._secret = hashlib.sha256(b"sluicegate-ui-session\0" + master_key.encode()).digest() if master_key else None
        self.lifetime = lifetime

    @property
    def open(self) -> bool:
        """No master key: the dashboard, like the API, is open to whoever reaches it."""
        return self._secret is None

    def _sign(self, expires: int) -> str:
        assert self._secret is not None
        return hmac.new(self._secret, f"ui:{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime)
        return f"{expires}.{self._sign(expires)}"

    def valid(self, token: str | None, now: float | None = None) -> bool:
        if self._secret is None:
            return True
        if not token:
            return False
        expires_text, _, signature = token.partition(".")
        if not expires_text.isdigit() or not signature:
            return False
        if not hmac.compare_digest(signature, self._sign(int(expires_text))):
            return False
        return int(expires_text) > (time.time() if now is None else now)

    def set_cookie(self, token: str, secure: bool) -> bytes:
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={token}; Path=/ui; Max-Age={self.lifetime}; HttpOnly; SameSite=Strict{flags}".encode()

    @staticmethod
    def clear_cookie() -> bytes:
        return f"{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict".encode()


def cookie_value(headers: list[tuple[bytes, bytes]], name: str = COOKIE) -> str | None:
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, item = part.strip().partition("=")
            if key == name:
                return item
    return None
