"""Per-request routing overrides, in the headers and body fields LiteLLM and Portkey users already send.

    x-sluicegate-timeout: 20          seconds for the whole request, retries and fallbacks included
    x-sluicegate-retries: 2           retries per deployment instead of the alias's `routing.retries`
    x-sluicegate-fallbacks: a,b       fallback aliases instead of the alias's `fallbacks` ("none": no fallback)
    {"fallbacks": ["a"], "num_retries": 2, "timeout": 20}   the same in the body (the body wins)

The body fields never reach a provider (GATEWAY_FIELDS in providers/openai/chat.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from sluicegate.errors import InvalidRequestError

#: body fields read here; the OpenAI adapter strips them (the other adapters build bodies field by field)
BODY_FIELDS = ("fallbacks", "num_retries", "timeout")
_MAX_RETRIES = 10


@dataclass(slots=True)
class Overrides:
    #: time.perf_counter() by which the request must be answered
    deadline: float | None = None
    budget: float | None = None
    retries: int | None = None
    fallbacks: list[str] | None = None


def read_overrides(request: dict[str, Any], control: dict[str, str], started: float) -> Overrides | None:
    """The request's overrides, or None (the common case, decided with a few dict lookups)."""
    has_body = "fallbacks" in request or "num_retries" in request or "timeout" in request
    if not has_body and not control:
        return None
    timeout = request.get("timeout") if "timeout" in request else control.get("x-sluicegate-timeout")
    retries = request.get("num_retries") if "num_retries" in request else control.get("x-sluicegate-retries")
    fallbacks: Any = request.get("fallbacks") if "fallbacks" in request else control.get("x-sluicegate-fallbacks")
    if timeout is None and retries is None and fallbacks is None:
        return None
    overrides = Overrides()
    if timeout is not None:
        overrides.budget = _seconds(timeout)
        overrides.deadline = started + overrides.budget
    if retries is not None:
        overrides.retries = _retries(retries)
    if fallbacks is not None:
        overrides.fallbacks = _fallbacks(fallbacks)
    return overrides


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (0 < seconds < math.inf) or isinstance(value, bool):
        raise InvalidRequestError(
            f"the request timeout must be a positive number of seconds, got {value!r}",
            param="timeout",
            code="invalid_timeout",
        )
    return seconds


def _retries(value: Any) -> int:
    try:
        retries = int(value)
    except (TypeError, ValueError):
        retries = -1
    if isinstance(value, (bool, float)) or not 0 <= retries <= _MAX_RETRIES:
        raise InvalidRequestError(
            f"retries must be a whole number from 0 to {_MAX_RETRIES}, got {value!r}", param="num_retries"
        )
    return retries


def _fallbacks(value: Any) -> list[str]:
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return []
        value = [name.strip() for name in value.split(",") if name.strip()]
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise InvalidRequestError("fallbacks must be a list of model names", param="fallbacks")
    return value


def remaining(deadline: float) -> float:
    return deadline - time.perf_counter()
