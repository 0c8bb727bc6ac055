"""The real Redis and PostgreSQL the service-backed tests use.

URLs come from SLUICEGATE_TEST_REDIS_URL / SLUICEGATE_TEST_DATABASE_URL and default to the local servers.
When a service cannot be reached the test is skipped, except under CI=true, where it fails: CI must
never pass by silently not testing.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _require(url: str, what: str, default_port: int) -> str:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return url
    except OSError as exc:
        message = f"{what} at {host}:{port} is not reachable ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; under CI=true service tests must run", pytrace=False)
        pytest.skip(message)


def redis_url() -> str:
    return _require(os.environ.get("SLUICEGATE_TEST_REDIS_URL", DEFAULT_REDIS_URL), "Redis", 6379)


def database_url() -> str:
    return _require(os.environ.get("SLUICEGATE_TEST_DATABASE_URL", DEFAULT_DATABASE_URL), "PostgreSQL", 5432)
