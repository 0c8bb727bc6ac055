"""Prompt injection and jailbreak heuristics on input; system-prompt leakage on output.

Input: weighted phrase patterns (instruction overrides, persona jailbreaks, chat-template tokens, requests
for the system prompt, exfiltration). A text is reported when the weights of the distinct patterns it hits
add up to `threshold`. No classifier: none that runs offline ships inside a PyPI package without fetching
weights at run time, and this check must cost microseconds.

Output: the answer repeats `leak_words` consecutive words of the request's system or developer messages.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sluicegate.guardrails.base import Check, Finding, Subject

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig

_OVERRIDE_VERB = r"(?:ignore|disregard|forget|override|overrule|bypass|skip|neglect|abandon|discard|drop)"
_FILLER = (
    r"(?:all|any|every|the|your|my|these|those|of|previous|prior|above|earlier|preceding|former|initial|original|"
    r"system|developer|existing|current|safety|default|given|old|that|you|were|have|been|told)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directives?|directions|guidelines|guidance|context|commands?|programming|"
    r"guardrails|restrictions|constraints|polic(?:y|ies)|filters|orders|safety)"
)
_JAILBROKEN = (
    r"(?:dan|do anything now|unrestricted|unfiltered|uncensored|jailbroken|evil|amoral|stan|dude|aim|"
    r"(?:in )?(?:developer|god|debug|dan) mode|free from (?:all )?(?:rules|restrictions)|"
    r"without (?:any )?(?:restrictions|limits|limitations|filters|rules|guidelines|censorship))"
)

#: (pattern on the lower-cased text, weight, needles: one must occur before the regex runs)
_RULES_TABLE: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (rf"\b{_OVERRIDE_VERB}\s{{1,3}}(?:{_FILLER}\s{{1,3}}){{0,6}}{_RULES}\b", 1.0,
     ("ignor", "disregard", "forget", "overr", "bypass", "skip", "neglect", "abandon", "discard", "drop")),
    (r"\b(?:forget|ignore|disregard)\s{1,3}(?:about\s{1,3})?everything\b", 1.0, ("everything",)),
    (rf"\b(?:you are|you're|act as|acting as|pretend (?:to be|you are)|role-?play as|behave (?:like|as)|"
     rf"become|from now on,? you (?:are|will be))\s{{1,3}}(?:now\s{{1,3}})?(?:an?\s{{1,3}})?"
     rf"(?:(?:ai|assistant|model|chatbot|bot|llm)\s{{1,3}})?{_JAILBROKEN}", 1.0,
     ("you are", "you're", "act as", "acting as", "pretend", "role", "behave", "become", "from now on")),
    (r"\b(?:enable|enter|activate|switch to|turn on|unlock)\s{1,3}(?:the\s{1,3})?"
     r"(?:developer|god|debug|dan|jailbreak|unrestricted|sudo|admin|maintenance)\s{1,3}mode\b", 1.0, ("mode",)),
    (r"\bdo anything now\b|\bjailbreak(?:ing|ed)?\b|\banti-?gpt\b|\bevil confidant\b|\bopposite mode\b", 0.6,
     ("anything now", "jailbreak", "gpt", "confidant", "opposite")),
    (r"\b(?:reveal|show|print|repeat|output|display|tell|give|leak|dump|spell out|write out|what (?:is|are|was|were))"
     r"\s{1,3}(?:me\s{1,3}|us\s{1,3})?(?:(?:your|the|all|of|initial|original|hidden|secret|full|entire|exact|"
     r"above|first|verbatim|complete)\s{1,3}){0,4}(?:system\s{1,3}(?:prompt|message|instructions)|"
     r"(?:initial|hidden|secret|original) (?:prompt|instructions)|instructions you were given|prompt above|"
     r"developer message|(?:text|everything|words) above (?:this|starting|it))", 1.0,
     ("system", "prompt", "instructions", "developer message", "above")),
    (r"<\|(?:im_start|im_end|system|endoftext|begin_of_text|start_header_id)\|>|\[/?inst\]|<</?sys>>", 1.0,
     ("<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>")),
    (r"(?:^|\n)\s{0,8}(?:#{2,4}\s{0,3})?(?:system|assistant)\s{0,3}(?:prompt|message|override)?\s{0,3}:", 0.5,
     ("system", "assistant")),
    (r"\b(?:new|updated|real|actual|true|revised)\s{1,3}(?:system\s{1,3})?instructions?\s{0,3}:", 1.0,
     ("instruction",)),
    (r"\byour (?:new|real|actual|true) (?:task|goal|purpose|objective|instructions?) (?:is|are)\b", 0.6,
     ("your new", "your real", "your actual", "your true")),
    (r"\bno (?:ethical|moral|content|safety) (?:guidelines|restrictions|constraints|filters|limits)\b", 0.6,
     ("ethical", "moral", "content", "safety")),
    (r"\b(?:stay in character|never break character|you have no (?:rules|restrictions|limits))\b", 0.5,
     ("character", "you have no")),
    (r"\b(?:note|message|instruction|attention) (?:to|for) (?:the )?(?:ai|assistant|llm|language model|model|agent)\b",
     0.7, ("note to", "note for", "message to", "message for", "instruction", "attention")),
    (r"\b(?:send|post|upload|exfiltrate|forward|transmit)\s{1,3}(?:\S{1,40}\s{1,3}){0,6}?to\s{1,3}https?://", 0.6,
     ("http",)),
    (r"\b(?:ignoriere|vergiss)\s{1,3}(?:\w{1,12}\s{1,3}){0,3}(?:anweisungen|regeln|instruktionen)\b"
     r"|\bignorez?\s{1,3}(?:toutes\s{1,3})?les\s{1,3}(?:\w{1,12}\s{1,3}){0,2}(?:instructions|règles)\b"
     r"|\bignora\s{1,3}(?:\w{1,12}\s{1,3}){0,3}(?:instrucciones|reglas|istruzioni|instruções)\b", 1.0,
     ("ignor", "vergiss")),
)  # fmt: skip

_COMPILED = tuple((re.compile(pattern), weight, needles) for pattern, weight, needles in _RULES_TABLE)
#: "please don't ignore the safety instructions" asks for the opposite of an override
_NEGATED = re.compile(r"\b(?:don'?t|do not|never|not to|shouldn'?t|must not|mustn'?t)\s{1,3}$")
_WORD = re.compile(r"\w+")


class InjectionCheck(Check):
    window = 256

    def __init__(self, threshold: float, leak_words: int) -> None:
        self.threshold = threshold
        self.leak_words = leak_words
        #: one-entry cache of the last system prompt's word n-grams: a stream scans many windows of one answer
        self._leak_cache: tuple[str, frozenset[tuple[str, ...]]] | None = None

    def scan(self, text: str, subject: Subject) -> list[Finding]:
        if subject.stage == "input":
            return self._injection(text)
        return self._leak(text, subject.request)

    def _injection(self, text: str) -> list[Finding]:
        lowered = text.lower()
        score = 0.0
        findings: list[Finding] = []
        for regex, weight, needles in _COMPILED:
            if not any(needle in lowered for needle in needles):
                continue
            for match in regex.finditer(lowered):
                if not _NEGATED.search(lowered, max(0, match.start() - 16), match.start()):
                    score += weight
                    findings.append(Finding("PROMPT_INJECTION", match.start(), match.end()))
                    break
        return findings if score >= self.threshold else []

    def _leak(self, text: str, request: dict[str, Any]) -> list[Finding]:
        shingles = self._system_shingles(request)
        if not shingles:
            return []
        words = [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
        n = self.leak_words
        findings: list[Finding] = []
        for index in range(len(words) - n + 1):
            if tuple(word for word, _, _ in words[index : index + n]) in shingles:
                start, end = words[index][1], words[index + n - 1][2]
                if findings and start <= findings[-1].end:
                    findings[-1] = Finding("SYSTEM_PROMPT_LEAK", findings[-1].start, end)
                else:
                    findings.append(Finding("SYSTEM_PROMPT_LEAK", start, end))
        return findings

    def _system_shingles(self, request: dict[str, Any]) -> frozenset[tuple[str, ...]]:
        system = _system_text(request)
        cached = self._leak_cache
        if cached is not None and cached[0] == system:
            return cached[1]
        words = [word.lower() for word in _WORD.findall(system)]
        n = self.leak_words
        shingles = frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        self._leak_cache = (system, shingles)
        return shingles


def _system_text(request: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in request.get("messages") or ():
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


def build(config: GuardrailConfig) -> InjectionCheck:
    if config.threshold <= 0:
        raise ValueError(".threshold: expected a positive number")
    if not 3 <= config.leak_words <= 200:
        raise ValueError(".leak_words: expected 3 to 200 words")
    return InjectionCheck(config.threshold, config.leak_words)
