"""Guardrail types by the name users write in `type:`. Adding a check: one file with `build`, one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sluicegate.guardrails import injection, pii, policy, secrets, webhook
from sluicegate.guardrails.base import Check

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig

BUILDERS: dict[str, Callable[[GuardrailConfig], Check]] = {
    "pii": pii.build,
    "secrets": secrets.build,
    "prompt_injection": injection.build,
    "policy": policy.build,
    "webhook": webhook.build,
}


def build_check(config: GuardrailConfig) -> Check:
    """Raises ValueError starting with the key at fault (`.entities: ...`)."""
    return BUILDERS[config.type](config)
