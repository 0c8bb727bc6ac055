"""The near-miss guard: a cheap lexical check that vetoes semantic hits an embedding cannot tell apart.

Sentence embeddings put "transfer 500 dollars to savings" and "... from savings" at 0.99 cosine, and
"17 times 23" next to "17 times 24". The labelled set in tests/data shows that no single threshold keeps
false hits under 2% with useful recall (docs/caching.md has the numbers). So a candidate hit must also pass
four rules that target the three kinds of near-miss, whatever the wording:

- numbers: the same numbers (digits, number words, times with am/pm) on both sides;
- negation: the same parity of negation cues (not, no, never, without, avoid, ...);
- names: the same capitalised words inside a sentence (France / Germany, Python / JavaScript);
- substitution: where the two prompts differ, no content word was swapped for another content word
  (to / from, open / closed, soft / hard). Additions and deletions pass, so rewordings that add or drop
  framing ("tell me", "which city") still hit.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_WORD = re.compile(r"\d+(?:[.,:]\d+)*(?:\s*(?:am|pm)\b)?|[a-z]+(?:'[a-z]+)?|[%$€£]")
_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*\b")
_SYMBOLS = {"%": "percent", "$": "dollar", "€": "euro", "£": "pound"}
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fifteen": "15",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000",
    "million": "1000000", "billion": "1000000000", "half": "0.5", "twice": "2x", "double": "2x", "triple": "3x",
}  # fmt: skip
_NEGATIONS = frozenset(
    "not no never without none nothing nobody neither nor cannot avoid stop except exclude excluding".split()  # noqa: SIM905
)
#: words that frame a request without changing what is asked
_FRAMING = frozenset(
    """a an the of in on at for with by about as is are was were be been being am do does did can could would
    should will shall may might must what which who whom whose when where why how i me my mine you your we us our
    it its this that these those there here and or so please tell give show let know want need kindly just also
    than really some any get way s""".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class Signature:
    """What the guard compares, computed once per prompt (stored with each semantic entry)."""

    words: tuple[str, ...]
    numbers: tuple[str, ...]
    negations: int
    names: frozenset[str]


def signature(text: str) -> Signature:
    words = tuple(_words(text))
    numbers = tuple(sorted(word for word in words if word[0].isdigit()))
    negations = sum(word in _NEGATIONS for word in words)
    return Signature(words, numbers, negations, _names(text))


def compatible(a: Signature, b: Signature) -> bool:
    """False when the prompts differ in a way that changes the answer although their embeddings agree."""
    if a.numbers != b.numbers or a.negations % 2 != b.negations % 2 or a.names != b.names:
        return False
    return not _substituted(a.words, b.words)


def _words(text: str) -> list[str]:
    lowered = text.lower().replace("n't", " not").replace("\u2019", "'")
    words = []
    for match in _WORD.findall(lowered):
        word = _SYMBOLS.get(match, match.replace(" ", ""))
        word = word.removesuffix("'s")
        word = _NUMBER_WORDS.get(word, word)
        words.append(word if word[0].isdigit() else _stem(word))
    return words


def _stem(word: str) -> str:
    # Enough to equate "checks"/"check", "selecting"/"select", "safely"/"safe"; not a linguistic stemmer.
    for suffix in ("ing", "ly", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _names(text: str) -> frozenset[str]:
    names = set()
    for match in _NAME.finditer(text):
        before = text[: match.start()].rstrip()
        if not before or before[-1] in ".?!:;\"'(":
            continue  # the first word of a sentence is capitalised whatever it is
        word = match.group(0).lower()
        if word != "i":
            names.add(_stem(word))
    return frozenset(names)


def _content(words: list[str] | tuple[str, ...]) -> set[str]:
    return {word for word in words if word not in _FRAMING and word not in _NEGATIONS}


def _substituted(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace":
            left, right = _content(a[i1:i2]), _content(b[j1:j2])
            if left and right and left != right:
                return True
    return False
