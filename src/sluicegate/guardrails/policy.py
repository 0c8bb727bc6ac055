"""Policy: denied keywords, patterns and topics, length limits, allowed languages, JSON answers.

Keywords, topics and `deny_patterns` are compiled with RE2, which runs in linear time whatever an operator
writes (no backreferences, no look-around: such patterns are refused at start-up with the reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from sluicegate.guardrails import languages
from sluicegate.guardrails.base import MAX_FINDINGS, Check, Finding, Subject, capped
from sluicegate.guardrails.schema import first_error

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig


def _re2() -> Any:
    # imported on first use: only operator-written patterns need it, so a missing wheel breaks only them
    try:
        import re2
    except ImportError:
        raise ValueError(": operator patterns need the google-re2 package (pip install google-re2)") from None
    return re2


def compile_re2(pattern: str, where: str) -> Any:
    re2 = _re2()
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"{where}: not a valid RE2 pattern ({reason})") from None


def keyword_pattern(words: list[str], where: str) -> Any:
    """One case-insensitive RE2 alternation of whole words or phrases."""
    if any(not word.strip() for word in words):
        raise ValueError(f"{where}: empty keyword")
    alternatives = []
    for word in sorted({w.strip() for w in words}, key=len, reverse=True):
        left = r"\b" if word[0].isalnum() else ""
        right = r"\b" if word[-1].isalnum() else ""
        alternatives.append(left + _re2().escape(word) + right)
    return compile_re2("(?i)(?:" + "|".join(alternatives) + ")", where)


class PolicyCheck(Check):
    window = 256

    def __init__(self, config: GuardrailConfig) -> None:
        self.deny = keyword_pattern(config.deny, ".deny") if config.deny else None
        self.deny_patterns = tuple(
            compile_re2(pattern, f".deny_patterns[{index}]") for index, pattern in enumerate(config.deny_patterns)
        )
        self.topics = tuple(
            (f"TOPIC_{name.upper()}", keyword_pattern(words, f".topics.{name}"))
            for name, words in config.topics.items()
        )
        self.max_input = config.max_input_chars
        self.max_output = config.max_output_chars
        self.languages = frozenset(code.lower() for code in config.languages)
        self.response_format = config.response_format
        # the stream must keep the whole answer only for what needs all of it
        self.wants_final = bool(self.languages) or self.response_format

    def scan(self, text: str, subject: Subject) -> list[Finding]:
        if subject.mode == "final":
            return self._whole(text, subject)
        findings = self._spans(text)
        limit = self.max_input if subject.stage == "input" else self.max_output
        if limit is not None and subject.offset + len(text) > limit:
            findings.append(Finding("MAX_INPUT_CHARS" if subject.stage == "input" else "MAX_OUTPUT_CHARS"))
        if subject.mode == "full":
            findings.extend(self._whole(text, subject))
        return findings

    def _spans(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        searches = [("DENIED_TERM", self.deny)] if self.deny is not None else []
        searches += [("DENIED_PATTERN", pattern) for pattern in self.deny_patterns]
        searches += list(self.topics)
        for entity, pattern in searches:
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    findings.append(Finding(entity, match.start(), match.end()))
                    if len(findings) > MAX_FINDINGS:
                        return capped(findings, entity)
        return findings

    def _whole(self, text: str, subject: Subject) -> list[Finding]:
        findings: list[Finding] = []
        if self.languages:
            language = languages.detect(text)
            if language is not None and language not in self.languages:
                findings.append(Finding("LANGUAGE"))
        if self.response_format and subject.stage == "output":
            findings.extend(_response_format(subject))
        return findings


def _response_format(subject: Subject) -> list[Finding]:
    wanted = subject.request.get("response_format")
    if not isinstance(wanted, dict) or wanted.get("type") not in ("json_object", "json_schema"):
        return []
    schema = (wanted.get("json_schema") or {}).get("schema") if wanted.get("type") == "json_schema" else None
    for answer in subject.answers:
        try:
            value = msgspec.json.decode(answer)
        except msgspec.DecodeError:
            return [Finding("INVALID_JSON")]
        if wanted["type"] == "json_object" and not isinstance(value, dict):
            return [Finding("INVALID_JSON")]
        if schema is not None and first_error(value, schema) is not None:
            return [Finding("SCHEMA_MISMATCH")]
    return []


def build(config: GuardrailConfig) -> PolicyCheck:
    for key in ("max_input_chars", "max_output_chars"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise ValueError(f".{key}: expected a positive number of characters")
    for code in config.languages:
        if len(code) != 2 or not code.isalpha():
            raise ValueError(f".languages: expected ISO 639-1 codes such as en or de, got '{code}'")
    return PolicyCheck(config)
