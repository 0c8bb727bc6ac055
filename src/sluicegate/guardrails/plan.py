"""Configured guardrails, which of them apply to a request, and what their findings do.

Everything here is built once at start-up (`Guardrail`, the per-alias `Plan`); a request only carries a small
`RequestState`: the verdicts so far and the redactor whose placeholders its answer may restore.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sluicegate.context import RequestContext
from sluicegate.guardrails.base import Check, Finding, GuardrailBlocked, Stage, Subject
from sluicegate.guardrails.config import GuardrailConfig
from sluicegate.guardrails.policy import compile_re2, keyword_pattern
from sluicegate.guardrails.redaction import PLACEHOLDER_MAX, Redactor
from sluicegate.guardrails.text import Segment

HEADER = "x-sluicegate-guardrails"
#: texts longer than this are scanned in a worker thread
OFFLOAD_CHARS = 64 * 1024
_HEADER_BYTES = HEADER.encode()
#: who wins when one guardrail reaches several verdicts in one request (input redacted, output flagged)
_STRENGTH = {"flagged": 1, "redacted": 2, "blocked": 3}
#: prompt injection arrives through what users and tools write, not through the application's own prompts
_DEFAULT_ROLES = {"prompt_injection": frozenset({"user", "tool"})}


@dataclass(frozen=True, slots=True)
class Guardrail:
    name: str
    action: str
    stages: frozenset[str]
    check: Check
    #: input: the roles whose messages are read; None: all
    roles: frozenset[str] | None
    restore: bool
    #: RE2 pattern of text that is never reported (`allow` and `allow_patterns`), or None
    allow: Any
    #: characters a stream holds back for this guardrail
    window: int

    @classmethod
    def build(cls, config: GuardrailConfig, check: Check) -> Guardrail:
        roles = frozenset(config.roles) if config.roles is not None else _DEFAULT_ROLES.get(config.type)
        return cls(
            name=config.name,
            action=config.action,
            stages=frozenset(config.on),
            check=check,
            roles=roles,
            restore=config.restore,
            allow=_allow_pattern(config),
            window=config.window or check.window,
        )

    def reads(self, segment: Segment) -> bool:
        return self.roles is None or segment.role in self.roles

    async def scan(self, text: str, subject: Subject) -> list[Finding]:
        check = self.check
        if check.remote:
            findings = await check.ascan(text, subject)
        elif len(text) > OFFLOAD_CHARS:
            # a huge prompt takes milliseconds per check: scan it in a thread so the event loop keeps serving
            # (the regex engine holds the GIL per search call, but the loop gets its turn between calls)
            findings = await asyncio.to_thread(check.scan, text, subject)
        else:
            findings = check.scan(text, subject)
        if findings and self.allow is not None:
            findings = self._not_allowed(findings, text)
        return findings

    def _not_allowed(self, findings: list[Finding], text: str) -> list[Finding]:
        allowed = [match.span() for match in self.allow.finditer(text)]
        return [
            finding
            for finding in findings
            if finding.whole or not any(lo <= finding.start and finding.end <= hi for lo, hi in allowed)
        ]


def _allow_pattern(config: GuardrailConfig) -> Any:
    parts: list[str] = []
    if config.allow:
        parts.append(keyword_pattern(config.allow, ".allow").pattern)
    for index, pattern in enumerate(config.allow_patterns):
        parts.append(compile_re2(pattern, f".allow_patterns[{index}]").pattern)
    if not parts:
        return None
    return compile_re2("|".join(f"(?:{part})" for part in parts), ".allow")


@dataclass(frozen=True, slots=True)
class Plan:
    """The guardrails of one alias (plus a key's), split by stage, with what a stream needs to know."""

    input: tuple[Guardrail, ...]
    output: tuple[Guardrail, ...]
    #: some input guardrail redacts with `restore: true`
    restores: bool
    #: characters a stream holds back: the largest window of the output guardrails
    window: int
    #: some output guardrail judges the whole answer, so a stream keeps its text
    wants_final: bool

    @classmethod
    def of(cls, guardrails: list[Guardrail]) -> Plan:
        # local checks first: a block there saves the webhook's round trip
        ordered = sorted(guardrails, key=lambda g: g.check.remote)
        output = tuple(g for g in ordered if "output" in g.stages)
        return cls(
            input=tuple(g for g in ordered if "input" in g.stages),
            output=output,
            restores=any(g.restore for g in ordered if "input" in g.stages),
            window=max([PLACEHOLDER_MAX, *(g.window for g in output)]),
            wants_final=any(g.check.wants_final for g in output),
        )


@dataclass(slots=True)
class RequestState:
    plan: Plan
    verdicts: dict[str, str] = field(default_factory=dict)
    redactor: Redactor | None = None

    def note(self, name: str, verdict: str) -> None:
        if _STRENGTH[verdict] > _STRENGTH.get(self.verdicts.get(name, ""), 0):
            self.verdicts[name] = verdict

    def redactions(self) -> Redactor:
        if self.redactor is None:
            self.redactor = Redactor()
        return self.redactor


def judge(guardrail: Guardrail, findings: list[Finding], state: RequestState, stage: Stage) -> list[Finding]:
    """Apply the guardrail's action to what it found; returns the findings to redact."""
    if not findings:
        return []
    action = guardrail.action
    if action == "block" or (action == "redact" and any(finding.whole for finding in findings)):
        state.note(guardrail.name, "blocked")
        entities = ", ".join(sorted({finding.entity for finding in findings}))
        where = "request" if stage == "input" else "answer"
        raise GuardrailBlocked(f"Blocked by guardrail '{guardrail.name}': the {where} contains {entities}")
    if action == "flag":
        state.note(guardrail.name, "flagged")
        return []
    state.note(guardrail.name, "redacted")
    return findings


def publish(ctx: RequestContext, state: RequestState, header: bool = True) -> None:
    """Record the verdicts, and (while the response has not started) say them in `x-sluicegate-guardrails`."""
    if not state.verdicts:
        return
    if ctx.record is not None:
        ctx.record.guardrails.update(state.verdicts)
    if header:
        value = ";".join(f"{name}={verdict}" for name, verdict in state.verdicts.items())
        ctx.response_headers[:] = [item for item in ctx.response_headers if item[0] != _HEADER_BYTES]
        ctx.add_header(HEADER, value)
