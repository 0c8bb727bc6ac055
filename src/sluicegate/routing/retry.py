"""What a failed attempt means for the next one: retry here, move on, switch chains, or give up.

Pure functions over the gateway's errors, so each rule is tested with plain inputs.
"""

from __future__ import annotations

import random
import re

from sluicegate.errors import (
    GatewayError,
    RateLimitError,
    UpstreamError,
    UpstreamRequestError,
    UpstreamTimeoutError,
)
from sluicegate.routing.config import NEVER_RETRIED

#: why a request may move to a special fallback chain instead of failing
CONTEXT_WINDOW = "context_window"
CONTENT_POLICY = "content_policy"

_UPSTREAM_STATUS = re.compile(r"upstream_(\d{3})$")

# What providers say when a prompt does not fit, or when they refuse on policy grounds. Only the message
# survives the error mapping, and every provider words it differently.
_CONTEXT_WINDOW = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|context window|prompt is too long"
    r"|exceeds the maximum number of tokens|too many tokens|input is too long|reduce the length",
    re.IGNORECASE,
)
_CONTENT_POLICY = re.compile(
    r"content[_ ]policy|content management policy|content[_ ]filter|safety system|responsibleai"
    r"|flagged as potentially violating|usage polic",
    re.IGNORECASE,
)


def upstream_status(error: GatewayError) -> int:
    """The status the upstream answered (or its equivalent for a transport failure), for `retry_on`.

    The gateway maps every 5xx to a 502 for the client; the router needs the original to decide.
    """
    if isinstance(error, RateLimitError):
        return 429
    if isinstance(error, UpstreamTimeoutError):
        return 504
    if isinstance(error, UpstreamError):
        code = error.code or ""
        if code == "upstream_auth_failed":
            return 401
        match = _UPSTREAM_STATUS.match(code)
        return int(match.group(1)) if match else 502
    return error.status


def may_retry(error: GatewayError, retry_on: frozenset[int]) -> bool:
    """Whether the same deployment may be tried again after `error`."""
    if not error.retryable:
        return False
    status = upstream_status(error)
    return status in retry_on and status not in NEVER_RETRIED


def special_kind(error: GatewayError) -> str | None:
    """CONTEXT_WINDOW or CONTENT_POLICY when a provider refused the request for one of those reasons."""
    if not isinstance(error, UpstreamRequestError) and error.code not in ("context_length_exceeded", "content_filter"):
        return None
    text = f"{error.code} {error.message}"
    if _CONTEXT_WINDOW.search(text):
        return CONTEXT_WINDOW
    if _CONTENT_POLICY.search(text):
        return CONTENT_POLICY
    return None


def recoded(error: GatewayError, kind: str) -> GatewayError:
    """The refusal with the code OpenAI clients look for, so they can shorten the prompt themselves."""
    code = "context_length_exceeded" if kind == CONTEXT_WINDOW else "content_policy_violation"
    if error.code == code:
        return error
    return UpstreamRequestError(error.message, code=code, param=error.param, status=error.status)


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**retry)].

    Full jitter spreads the retries of many clients that failed together, instead of having them all
    come back at the same instant.
    """
    return rng.uniform(0.0, min(cap, base * (2**retry)))


def retry_wait(
    error: GatewayError, retry: int, base: float, cap: float, max_retry_after: float, rng: random.Random
) -> float | None:
    """Seconds to wait before retrying the same deployment, or None when it asked for longer than we wait."""
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= max_retry_after else None
    return backoff_delay(retry, base, cap, rng)
