"""Config sections owned by guardrails: the top-level list of named guardrails."""

from __future__ import annotations

import msgspec


class GuardrailConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    type: str
    #: input, output or both
    on: list[str] = msgspec.field(default_factory=lambda: ["input"])
    #: block | redact | flag
    action: str = "block"
