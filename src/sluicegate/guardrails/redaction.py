"""Typed placeholders: `<EMAIL_1>` in place of the value, and the way back for `restore: true`.

One `Redactor` lives for one request, so the same value gets the same placeholder in every message (the model
can still tell two people apart) and the answer can be restored with this request's values only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]{0,40})_(\d{1,6})>")
#: the longest placeholder a stream must be able to hold back whole
PLACEHOLDER_MAX = 50


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    entity: str
    #: put the value back in the answer (the guardrail has `restore: true`)
    restore: bool = False


class Redactor:
    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        #: placeholder -> original, only for values whose guardrail restores
        self.originals: dict[str, str] = {}

    def placeholder(self, entity: str, value: str, restore: bool, avoid: str = "") -> str:
        key = (entity, value)
        placeholder = self._by_value.get(key)
        if placeholder is None:
            number = self._counts.get(entity, 0) + 1
            placeholder = f"<{entity}_{number}>"
            # a placeholder the text already contains would be restored to the wrong value
            while placeholder in avoid:
                number += 1
                placeholder = f"<{entity}_{number}>"
            self._counts[entity] = number
            self._by_value[key] = placeholder
        if restore:
            self.originals[placeholder] = value
        return placeholder

    def redact(self, text: str, spans: Iterable[Span], avoid: str = "") -> str:
        """Replace each span (sorted, not overlapping) with its placeholder."""
        pieces: list[str] = []
        position = 0
        for span in spans:
            pieces.append(text[position : span.start])
            pieces.append(self.placeholder(span.entity, text[span.start : span.end], span.restore, avoid or text))
            position = span.end
        pieces.append(text[position:])
        return "".join(pieces)

    def restore(self, text: str) -> str:
        if not self.originals or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda match: self.originals.get(match.group(0), match.group(0)), text)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sort by position and join overlapping spans (the earlier one names the entity), so nothing in their
    union stays in the clear."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end > last.end:
                merged[-1] = Span(last.start, span.end, last.entity, last.restore and span.restore)
            continue
        merged.append(span)
    return merged
