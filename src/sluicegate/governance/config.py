"""Config sections owned by governance: per-alias limits."""

from __future__ import annotations

import msgspec


class AliasLimitsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rpm: int | None = None
    tpm: int | None = None
