"""The dashboard's files, shipped inside the package and read once at start-up; nothing comes from a CDN."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}

#: everything the pages load comes from this server; no inline scripts, no third parties
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def load_assets() -> dict[str, Asset]:
    """`name -> Asset` for every file in dashboard/static."""
    assets: dict[str, Asset] = {}
    folder = resources.files("sluicegate.observability.dashboard").joinpath("static")
    for entry in folder.iterdir():
        if not entry.is_file():
            continue
        suffix = entry.name[entry.name.rfind(".") :]
        content_type = _TYPES.get(suffix)
        if content_type is None:
            continue
        body = entry.read_bytes()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'
        assets[entry.name] = Asset(body, content_type, etag)
    return assets
