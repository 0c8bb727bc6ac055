"""The guardrail contract: a check finds typed spans in text and returns findings.

A check never decides what happens to what it found: the pipeline applies the configured action (block,
redact, flag) the same way for every check. Adding a check is one file with a `Check` subclass and one line
in `registry.py`.

Every built-in pattern is written to run in linear time on any input: each one starts with a negative
look-behind for its own token characters (so a long run of such characters is tried only at its start) and
every repetition is bounded. `tests/test_guardrails_units.py` runs them on adversarial strings.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sluicegate.errors import InvalidRequestError, ServiceUnavailableError

Stage = Literal["input", "output"]
#: more findings than this from one check on one text become one finding about the whole text (which a
#: redact action turns into a block): thousands of tiny matches are an attack on the scanner, not data
MAX_FINDINGS = 4096
Mode = Literal["full", "window", "final"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A typed span of the scanned text; `start == end` means the finding is about the text as a whole."""

    entity: str
    start: int = 0
    end: int = 0

    @property
    def whole(self) -> bool:
        return self.end <= self.start


@dataclass(slots=True)
class Subject:
    """What a check may need besides the text: the stage and the request (system prompt, response_format)."""

    stage: Stage
    request: dict[str, Any]
    #: output only: each choice's complete answer, for checks that judge an answer as a whole (JSON, schema)
    answers: Sequence[str] = ()
    #: full: the whole text at once; window: a piece of a streamed answer (checks on the whole answer wait);
    #: final: a streamed answer once complete, for the checks on the whole answer only
    mode: Mode = "full"
    #: window mode: characters of the answer before `text` (running length limits)
    offset: int = 0
    request_id: str = ""


class Check(ABC):
    """One kind of check. `scan` must be pure: no I/O, no state between calls, safe on any string."""

    #: characters a single finding can span; streams hold back this much so a split one is still caught
    window: int = 256
    #: True: some of the check judges a whole answer (language, JSON, webhook); a stream keeps the answer's text
    #: and calls `scan` once more in `final` mode when it is complete
    wants_final: bool = False
    #: True: the check does I/O, and the pipeline awaits `ascan` instead of calling `scan`
    remote: bool = False

    @abstractmethod
    def scan(self, text: str, subject: Subject) -> list[Finding]: ...

    async def ascan(self, text: str, subject: Subject) -> list[Finding]:
        return self.scan(text, subject)


Validator = Callable[[re.Match[str], str], bool]
#: returns the span to report (the regex may have matched more), or None
Refiner = Callable[[re.Match[str], str], "tuple[int, int] | None"]


@dataclass(frozen=True, slots=True)
class Detector:
    """One regular expression for one entity, with an optional cheap pre-filter and a validator."""

    entity: str
    regex: re.Pattern[str]
    #: the text (lower-cased when `lowered`) must contain one of these before the regex runs at all
    needles: tuple[str, ...] = ()
    lowered: bool = False
    #: checksums and context rules the regex cannot express; gets the match and the whole text
    validate: Validator | None = None
    #: the group whose span is reported (0: the whole match)
    group: int = 0
    #: instead of `validate` and `group`: decide the exact span from the match (IBAN: by the country's length)
    refine: Refiner | None = None
    #: a cheap pattern every match overlaps (a run of digits): the detector's own regex then runs only in
    #: windows of `margin` characters around the gate's hits instead of over the whole text. Python's regex
    #: engine spends ~20 ns per position on a pattern that starts with a class; one gate serves many detectors.
    gate: re.Pattern[str] | None = None
    margin: int = 48


def capped(findings: list[Finding], entity: str) -> list[Finding]:
    return findings if len(findings) <= MAX_FINDINGS else [Finding(entity)]


def _windows(gate: re.Pattern[str], margin: int, text: str) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for match in gate.finditer(text):
        start, end = max(0, match.start() - margin), min(len(text), match.end() + margin)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def run_detectors(detectors: Iterable[Detector], text: str) -> list[Finding]:
    lowered: str | None = None
    gated: dict[tuple[int, int], list[tuple[int, int]]] = {}
    findings: list[Finding] = []
    for detector in detectors:
        if detector.needles:
            haystack = text
            if detector.lowered:
                if lowered is None:
                    lowered = text.lower()
                haystack = lowered
            if not any(needle in haystack for needle in detector.needles):
                continue
        if detector.gate is None:
            windows = [(0, len(text))]
        else:
            key = (id(detector.gate), detector.margin)
            if key not in gated:
                gated[key] = _windows(detector.gate, detector.margin, text)
            windows = gated[key]
        for match in _search(detector.regex, text, windows):
            if detector.refine is not None:
                span = detector.refine(match, text)
                if span is not None:
                    findings.append(Finding(detector.entity, *span))
            elif detector.validate is None or detector.validate(match, text):
                start, end = match.span(detector.group)
                findings.append(Finding(detector.entity, start, end))
            if len(findings) > MAX_FINDINGS:
                return [Finding(detector.entity)]
    return findings


def _search(regex: re.Pattern[str], text: str, windows: list[tuple[int, int]]) -> Iterator[re.Match[str]]:
    for start, end in windows:
        yield from regex.finditer(text, start, end)


def drop_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the first of overlapping findings in detector order (more specific detectors come first)."""
    if len(findings) < 2:
        return findings
    kept: list[Finding] = []
    for finding in findings:
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return kept


def select_entities(known: Sequence[str], wanted: list[str] | None, key: str = ".entities") -> frozenset[str]:
    if wanted is None:
        return frozenset(known)
    unknown = [entity for entity in wanted if entity not in known]
    if unknown:
        raise ValueError(f"{key}: unknown entity '{unknown[0]}' (expected any of: {', '.join(known)})")
    return frozenset(wanted)


class GuardrailBlocked(InvalidRequestError):
    """A guardrail with `action: block` found something: OpenAI-shaped 400, the provider is not called."""

    code = "guardrail_blocked"


class GuardrailUnavailable(ServiceUnavailableError):
    """A fail-closed guardrail could not reach its webhook."""

    code = "guardrail_unavailable"
