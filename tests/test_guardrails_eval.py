"""Precision and recall of the built-in checks on the labelled evaluation set (tests/data/guardrail_eval.jsonl).

Each case is a text, the check it is for, and the findings expected as (entity, exact text). PII and secrets
are scored per finding: the right entity on exactly the right text is a true positive, anything else found is
a false positive, anything expected and not found a false negative. Prompt injection is scored per text.
Cases marked `"split": "holdout"` were written after the rules were frozen and never used to tune them.

Run `pytest tests/test_guardrails_eval.py -s` to see the table (docs/guardrails.md quotes it).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sluicegate.guardrails.base import Subject
from sluicegate.guardrails.config import GuardrailConfig
from sluicegate.guardrails.registry import build_check

DATA = Path(__file__).parent / "data" / "guardrail_eval.jsonl"
TYPES = {"pii": "pii", "secrets": "secrets", "injection": "prompt_injection"}


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(cases: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    checks = {name: build_check(GuardrailConfig(name=name, type=kind)) for name, kind in TYPES.items()}
    tally: dict[str, Counter[str]] = {}
    for case in cases:
        text = case["text"]
        findings = checks[case["check"]].scan(text, Subject("input", {}))
        if case["check"] == "injection":
            predicted = Counter({"PROMPT_INJECTION": 1} if findings else {})
            expected = Counter({"PROMPT_INJECTION": 1} if case["expect"] else {})
        else:
            predicted = Counter(f"{f.entity}:{text[f.start : f.end]}" for f in findings)
            expected = Counter(f"{entity}:{value}" for entity, value in case["expect"])
        counts = tally.setdefault(case["check"], Counter())
        counts["cases"] += 1
        counts["tp"] += sum((predicted & expected).values())
        counts["fp"] += sum((predicted - expected).values())
        counts["fn"] += sum((expected - predicted).values())
    return tally


def precision(counts: Counter[str]) -> float:
    return counts["tp"] / max(1, counts["tp"] + counts["fp"])


def recall(counts: Counter[str]) -> float:
    return counts["tp"] / max(1, counts["tp"] + counts["fn"])


def table(title: str, tally: dict[str, Counter[str]]) -> str:
    lines = [title, "| check | cases | TP | FP | FN | precision | recall |", "|---|---|---|---|---|---|---|"]
    for name, c in sorted(tally.items()):
        lines.append(
            f"| {name} | {c['cases']} | {c['tp']} | {c['fp']} | {c['fn']} | {precision(c):.3f} | {recall(c):.3f} |"
        )
    return "\n".join(lines)


def test_the_evaluation_set_is_large_and_balanced() -> None:
    cases = load()
    assert len(cases) >= 300
    for check in TYPES:
        positives = sum(1 for c in cases if c["check"] == check and c["expect"])
        negatives = sum(1 for c in cases if c["check"] == check and not c["expect"])
        assert positives >= 30 and negatives >= 30, check


def test_precision_and_recall_per_check() -> None:
    cases = load()
    everything = score(cases)
    print()
    print(table("All cases", everything))
    print(table("Held-out cases only", score([c for c in cases if c.get("split") == "holdout"])))
    for check in ("pii", "secrets"):
        assert precision(everything[check]) >= 0.95, check
        assert recall(everything[check]) >= 0.95, check
    # heuristics, no target in the issue: guard against regressions only
    assert precision(everything["injection"]) >= 0.9 and recall(everything["injection"]) >= 0.9
