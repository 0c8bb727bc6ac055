"""Secrets: provider and cloud API keys, private key blocks, JWTs, labelled credentials, high-entropy tokens.

Vendor keys are found by their documented prefixes and shapes. Tokens without a prefix count only with a
label (`password = ...`, `api_key: ...`) or, unlabelled, when they look random: long, mixed-case with digits,
high Shannon entropy, and not a hex digest, a UUID or a line of a PEM/base64 block that is not a key.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from sluicegate.guardrails.base import Check, Detector, Finding, Subject, drop_overlaps, run_detectors, select_entities

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig

ENTITIES = (
    "PRIVATE_KEY",
    "JWT",
    "ANTHROPIC_KEY",
    "OPENAI_KEY",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "GOOGLE_API_KEY",
    "HUGGINGFACE_TOKEN",
    "GENERIC_SECRET",
    "HIGH_ENTROPY",
)


def shannon_entropy(value: str) -> float:
    length = len(value)
    return -sum(count / length * math.log2(count / length) for count in Counter(value).values())


def _mixed(value: str) -> bool:
    """Random keys of 20+ characters practically always mix upper case, lower case and digits."""
    return any(c.isdigit() for c in value) and any(c.islower() for c in value) and any(c.isupper() for c in value)


def _body_random(match: re.Match[str], text: str) -> bool:
    return _mixed(match.group(match.lastindex or 0))


def _has_digit(match: re.Match[str], text: str) -> bool:
    return any(char.isdigit() for char in match.group(0))


_PLACEHOLDER = re.compile(
    r"(?i)x{4}|\*{3}|\.{3}|<|>|\$\{|\{\{|your|example|changeme|placeholder|redacted|dummy|sample|"
    r"process\.env|environ|getenv|secrets\.|config\.|settings\.|\(|\[|\{"
)
_IDENTIFIER = re.compile(r"[A-Z][A-Z0-9_]*|[a-z_][a-z0-9_]*|[A-Za-z][A-Za-z]*(?:\.[A-Za-z_]\w*)+")


def _labelled_ok(match: re.Match[str], text: str) -> bool:
    value = match.group(1)
    if _PLACEHOLDER.search(value) or _IDENTIFIER.fullmatch(value):
        return False
    classes = sum(
        (
            any(char.islower() for char in value),
            any(char.isupper() for char in value),
            any(char.isdigit() for char in value),
            any(not char.isalnum() for char in value),
        )
    )
    has_digit = any(char.isdigit() for char in value)
    return (classes >= 3 or (classes == 2 and has_digit)) and shannon_entropy(value) >= 2.8


_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]{60,}|-----BEGIN [A-Z ]+-----")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{32}")
#: random-looking values that are public by design
_PUBLIC_PREFIXES = ("pk_live_", "pk_test_")


def _entropy_rule(min_entropy: float) -> Detector:
    def validate(match: re.Match[str], text: str) -> bool:
        value = match.group(0)
        if not _mixed(value) or value.startswith(_PUBLIC_PREFIXES) or shannon_entropy(value) < min_entropy:
            return False
        if text[max(0, match.start() - 7) : match.start()] == "base64,":
            return False  # a data: URI (an image, a file), not a credential
        # one line of a certificate or other base64 block: its neighbours look the same
        before = text[max(0, match.start() - 120) : match.start()]
        after = text[match.end() : match.end() + 120]
        prev_line = before.rsplit("\n", 2)[-2] if before.count("\n") >= 2 else ""
        next_line = after.split("\n", 2)[1] if after.count("\n") >= 1 else ""
        return not (_BASE64_LINE.fullmatch(prev_line.strip()) or _BASE64_LINE.fullmatch(next_line.strip()))

    return Detector(
        "HIGH_ENTROPY",
        re.compile(r"(?<![A-Za-z0-9+/_.-])[A-Za-z0-9+/_-]{32,200}={0,2}(?![A-Za-z0-9+/_=.-])"),
        validate=validate,
        gate=_LONG_TOKEN,
        margin=210,
    )


_PEM_END = re.compile(r"-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"\s{0,4}(?:[A-Za-z0-9+/=:,-]{1,100}\s{1,4}){0,120}[A-Za-z0-9+/=]{0,100}")
#: the longest private key block (an 8192-bit RSA key is about 6.5 KB)
_PEM_MAX = 16000


def _pem_span(match: re.Match[str], text: str) -> tuple[int, int]:
    """Up to the END line; a block cut off (or a stream still arriving) up to its last base64 line."""
    end = text.find("-----END", match.end(), match.end() + _PEM_MAX)
    if end >= 0:
        footer = _PEM_END.match(text, end)
        if footer is not None:
            return match.start(), footer.end()
    body = _PEM_BODY.match(text, match.end())
    return match.start(), body.end() if body is not None else match.end()


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "PRIVATE_KEY",
        re.compile(r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----"),
        needles=("-----BEGIN",),
        refine=_pem_span,
    ),
    Detector(
        "JWT",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{10,4000}\.eyJ[A-Za-z0-9_-]{2,8000}\.[A-Za-z0-9_-]{0,2000}(?![\w-])"),
        needles=("eyJ",),
    ),
    Detector(
        "ANTHROPIC_KEY",
        re.compile(r"(?<![\w-])sk-ant-[a-z]{3,6}\d{2}-[A-Za-z0-9_-]{20,250}(?![\w-])"),
        needles=("sk-ant-",),
    ),
    Detector(
        "OPENAI_KEY",
        re.compile(r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?([A-Za-z0-9_-]{20,250})(?![\w-])"),
        needles=("sk-",),
        validate=_body_random,
    ),
    Detector(
        "AWS_ACCESS_KEY",
        re.compile(
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|AGPA)[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
        needles=("AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA", "AGPA"),
    ),
    Detector(
        "AWS_SECRET_KEY",
        re.compile(
            r"(?i:aws)?[_ .-]?(?i:secret)[_ .-]?(?i:access)?[_ .-]?(?i:key)(?:[_ .-]?(?i:id))?[\"']?"
            r"[ \t]{0,3}(?::|=|=>|,)[ \t]{0,3}[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        needles=("secret",),
        lowered=True,
        validate=_body_random,
        group=1,
    ),
    Detector(
        "GITHUB_TOKEN",
        re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{50,255})(?![\w-])"),
        needles=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector("GITLAB_TOKEN", re.compile(r"(?<![\w-])glpat-[A-Za-z0-9_-]{20,60}(?![\w-])"), needles=("glpat-",)),
    Detector(
        "SLACK_TOKEN",
        re.compile(
            r"(?<![\w-])(?:xox[abposre]-[A-Za-z0-9-]{10,250}|xapp-\d-[A-Za-z0-9-]{20,250})(?![\w-])"
            r"|https://hooks\.slack\.com/services/[A-Za-z0-9]{6,14}/[A-Za-z0-9]{6,14}/[A-Za-z0-9]{16,40}"
        ),
        needles=("xox", "xapp-", "hooks.slack.com"),
        validate=_has_digit,
    ),
    Detector(
        "STRIPE_KEY",
        re.compile(r"(?<![\w-])(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}|whsec_[A-Za-z0-9+/]{24,80})(?![\w-])"),
        needles=("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
    ),
    Detector("GOOGLE_API_KEY", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), needles=("AIza",)),
    Detector(
        "HUGGINGFACE_TOKEN",
        re.compile(r"(?<![\w-])hf_[A-Za-z0-9]{30,40}(?![\w-])"),
        needles=("hf_",),
        validate=lambda match, text: (
            any(c.isupper() for c in match.group(0)) and any(c.islower() for c in match.group(0)[3:])
        ),
    ),
    Detector(
        "GENERIC_SECRET",
        re.compile(
            r"(?i:(?<![A-Za-z0-9])(?:password|passwd|pwd|passphrase|secret|secret[_-]?key|api[_-]?key|apikey|"
            r"access[_-]?token|auth[_-]?token|refresh[_-]?token|client[_-]?secret|token|credentials?|bearer))[\"']?"
            r"(?:[ \t]{0,3}(?:[:=]|=>)[ \t]{0,3}|[ \t]{1,3}(?:(?i:is|was)[ \t]{1,3})?)[\"']?([^\s\"'`,;]{8,200})"
        ),
        needles=("pass", "pwd", "secret", "key", "token", "credential", "bearer"),
        lowered=True,
        validate=_labelled_ok,
        group=1,
    ),
)


class SecretsCheck(Check):
    # an unterminated private key block reaches the end of the text, which holds a stream back (streaming.py)
    window = 256

    def __init__(self, entities: frozenset[str], min_entropy: float) -> None:
        detectors = [d for d in DETECTORS if d.entity in entities]
        if "HIGH_ENTROPY" in entities:
            detectors.append(_entropy_rule(min_entropy))
        self.detectors = tuple(detectors)

    def scan(self, text: str, subject: Subject) -> list[Finding]:
        return drop_overlaps(run_detectors(self.detectors, text))


def build(config: GuardrailConfig) -> SecretsCheck:
    if not 0 < config.min_entropy <= 8:
        raise ValueError(".min_entropy: expected bits per character between 0 and 8")
    return SecretsCheck(select_entities(ENTITIES, config.entities), config.min_entropy)
