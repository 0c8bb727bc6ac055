"""Config sections owned by guardrails: the top-level list of named guardrails.

One flat struct serves every type; `check_guardrails` rejects keys that mean nothing for the guardrail's type,
so a typo such as `entities:` on a policy guardrail is an error at start-up instead of a silent no-op.
"""

from __future__ import annotations

from typing import Any

import msgspec

TYPES = ("pii", "secrets", "prompt_injection", "policy", "webhook")
ACTIONS = ("block", "redact", "flag")
STAGES = ("input", "output")

#: keys that only some types read; every other key is shared
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "pii": frozenset({"entities", "backend", "presidio_model", "presidio_language", "presidio_score"}),
    "secrets": frozenset({"entities", "min_entropy"}),
    "prompt_injection": frozenset({"threshold", "leak_words"}),
    "policy": frozenset(
        {
            "deny",
            "deny_patterns",
            "topics",
            "max_input_chars",
            "max_output_chars",
            "languages",
            "response_format",
        }
    ),
    "webhook": frozenset({"url", "headers", "timeout", "fail"}),
}
_SPECIFIC = frozenset().union(*_TYPE_KEYS.values())


class GuardrailConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    #: pii | secrets | prompt_injection | policy | webhook
    type: str
    #: input, output or both
    on: list[str] = msgspec.field(default_factory=lambda: ["input"])
    #: block | redact | flag
    action: str = "block"
    #: message roles whose text is checked; None: every role (prompt_injection: user and tool)
    roles: list[str] | None = None
    #: redact only: put the original values back where the answer repeats a placeholder
    restore: bool = False
    #: text that is never reported: exact strings (case-insensitive) and RE2 patterns
    allow: list[str] = []
    allow_patterns: list[str] = []
    #: streams: characters held back so a finding split across chunks is still caught (None: the check's own)
    window: int | None = None
    # --- pii, secrets ---------------------------------------------------------------------------------
    #: entity types to look for; None: all the type knows
    entities: list[str] | None = None
    # --- pii ------------------------------------------------------------------------------------------
    #: builtin (patterns with checksums) | presidio (adds PERSON, LOCATION, ... with the `presidio` extra)
    backend: str = "builtin"
    #: an installed spaCy model; nothing is downloaded at run time
    presidio_model: str = "en_core_web_lg"
    presidio_language: str = "en"
    presidio_score: float = 0.5
    # --- secrets --------------------------------------------------------------------------------------
    #: Shannon entropy (bits per character) above which an unlabelled long token counts as a secret
    min_entropy: float = 4.2
    # --- prompt_injection -----------------------------------------------------------------------------
    #: sum of heuristic weights that makes a text an injection attempt
    threshold: float = 1.0
    #: output: consecutive words of the system prompt that, repeated in the answer, count as a leak
    leak_words: int = 8
    # --- policy ---------------------------------------------------------------------------------------
    #: keywords and phrases (case-insensitive, whole words) that must not appear
    deny: list[str] = []
    #: RE2 patterns that must not match
    deny_patterns: list[str] = []
    #: topic name -> keywords; a topic is reported when one of its keywords appears
    topics: dict[str, list[str]] = {}
    max_input_chars: int | None = None
    max_output_chars: int | None = None
    #: ISO 639-1 codes; text confidently detected as another language is reported
    languages: list[str] = []
    #: output: valid JSON when the request's response_format asks for it, matching its json_schema
    response_format: bool = False
    # --- webhook --------------------------------------------------------------------------------------
    url: str | None = None
    headers: dict[str, str] = {}
    #: seconds for the whole exchange with the webhook
    timeout: float = 1.0
    #: open: let the request through when the webhook fails or times out; closed: refuse it
    fail: str = "closed"


def check_guardrails(guardrails: list[GuardrailConfig], aliases: list[list[str]]) -> None:
    """Precise start-up errors for the `guardrails:` list and the names each alias (by index) refers to.

    Raises ValueError with a message that starts with the location; the caller prefixes the file.
    """
    names: set[str] = set()
    for index, guardrail in enumerate(guardrails):
        where = f"guardrails[{index}]"
        if guardrail.name in names:
            raise ValueError(f"at {where}.name: the guardrail '{guardrail.name}' is defined twice")
        names.add(guardrail.name)
        _check_one(guardrail, where)
    for index, wanted in enumerate(aliases):
        for name in wanted:
            if name not in names:
                known = ", ".join(sorted(names)) or "none are defined"
                raise ValueError(
                    f"at models[{index}].guardrails: unknown guardrail '{name}' (expected one of: {known})"
                )
    from sluicegate.guardrails.registry import build_check

    for index, guardrail in enumerate(guardrails):
        try:
            build_check(guardrail)
        except ValueError as exc:
            raise ValueError(f"at guardrails[{index}]{exc}") from None


def _check_one(guardrail: GuardrailConfig, where: str) -> None:
    if guardrail.type not in TYPES:
        raise ValueError(f"at {where}.type: unknown guardrail type '{guardrail.type}' (expected one of: {_or(TYPES)})")
    if guardrail.action not in ACTIONS:
        raise ValueError(f"at {where}.action: expected one of {_or(ACTIONS)}, got '{guardrail.action}'")
    if not guardrail.on or any(stage not in STAGES for stage in guardrail.on):
        raise ValueError(f"at {where}.on: expected a non-empty list of {_or(STAGES)}")
    defaults = GuardrailConfig(name="", type="")
    foreign = [
        key
        for key in sorted(_SPECIFIC - _TYPE_KEYS[guardrail.type])
        if getattr(guardrail, key) != getattr(defaults, key)
    ]
    if foreign:
        raise ValueError(f"at {where}: '{foreign[0]}' does not apply to a guardrail of type '{guardrail.type}'")
    if guardrail.action == "redact" and guardrail.type in ("webhook", "prompt_injection"):
        raise ValueError(f"at {where}.action: a {guardrail.type} guardrail has no spans to redact; use block or flag")
    if guardrail.restore and guardrail.action != "redact":
        raise ValueError(f"at {where}.restore: restore needs action: redact")
    if guardrail.window is not None and not 16 <= guardrail.window <= 65536:
        raise ValueError(f"at {where}.window: expected 16 to 65536 characters")
    if guardrail.type == "webhook":
        _check_webhook(guardrail, where)


def _check_webhook(guardrail: GuardrailConfig, where: str) -> None:
    if not guardrail.url or not guardrail.url.startswith(("http://", "https://")):
        raise ValueError(f"at {where}.url: a webhook guardrail needs an http:// or https:// url")
    if guardrail.fail not in ("open", "closed"):
        raise ValueError(f"at {where}.fail: expected open or closed, got '{guardrail.fail}'")
    if guardrail.timeout <= 0:
        raise ValueError(f"at {where}.timeout: expected a positive number of seconds")


def _or(values: Any) -> str:
    return ", ".join(values)
