"""AWS Signature Version 4 for request headers: the small part of botocore the gateway needs.

Pure functions of the request, the credentials and the time, so they are checked against AWS's published
examples and against botocore itself (tests/test_bedrock_sigv4.py). The signing key changes once a day per
region and service and is cached; a signature is then two hashes and one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        # Never let the secret reach a log line through a repr.
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """`headers` plus `x-amz-date`, `x-amz-security-token` (temporary credentials) and `Authorization`.

    Every header given is signed, along with `host`, which HTTP clients set from the URL. Headers added after
    signing (request ids, trace context) are allowed by AWS as long as they are not `x-amz-*`.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    signed = {name.lower(): value for name, value in headers.items()}
    signed["host"] = urlsplit(url).netloc
    signed["x-amz-date"] = amz_date
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = ";".join(sorted(signed))
    canonical = canonical_request(method, url, signed, hashlib.sha256(body).hexdigest())
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {**headers, "x-amz-date": amz_date}
    if credentials.session_token:
        result["x-amz-security-token"] = credentials.session_token
    result["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
    return result


def canonical_request(method: str, url: str, headers: dict[str, str], payload_hash: str) -> str:
    """`headers` must have lower-case names and include everything to be signed."""
    parts = urlsplit(url)
    lines = [
        method.upper(),
        canonical_path(parts.path),
        canonical_query(parts.query),
        "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(headers)),
        ";".join(sorted(headers)),
        payload_hash,
    ]
    return "\n".join(lines)


def canonical_path(path: str) -> str:
    # Every service but S3 encodes the path a second time: `model/a%3Ab` is signed as `model/a%253Ab`.
    return quote(path or "/", safe="/~")


def canonical_query(query: str) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


@lru_cache(maxsize=64)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
