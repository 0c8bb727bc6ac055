"""A small, dependency-free language guess for the `languages:` policy.

Scripts decide most languages outright (Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Hangul, kana, Han);
Latin-script text is told apart by counting frequent function words. It answers None when unsure (short
text, no clear winner), and the policy lets unsure text through: a guess must never block on noise.
"""

from __future__ import annotations

import re

_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("greek", re.compile(r"[\u0370-\u03ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
    ("hangul", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("kana", re.compile(r"[\u3040-\u30ff]")),
    ("han", re.compile(r"[\u4e00-\u9fff]")),
)
_LETTER = re.compile(r"[^\W\d_]")

_STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the and is are was were of to in that it for with on this you not be have what which from they we",
        "de": "der die das und ist nicht ich sie es ein eine zu mit den von auf für sich auch dem wir ist",
        "fr": "le la les et est une des du que qui dans pour pas sur avec vous nous ce il elle au sont",
        "es": "el la los las y es una que de del en por para con no se su al lo como pero muy está",
        "it": "il lo gli della di che è e un una per non sono con del nel alla questo anche più",
        "pt": "o os as e é um uma que de do da em para com não se por mais como está são você",
        "nl": "de het een en is van dat niet in op te voor met zijn er ik je wat ook maar",
        "sv": "och att det som är en på för med inte jag har av till den ett om vi",
        "pl": "i w nie na jest że się do to z jak co ale po od tak czy jestem",
        "tr": "ve bir bu da de için ile ne çok gibi daha olarak ama var değil ben sen",
        "id": "dan yang di ini itu dengan untuk tidak dari ke ada akan saya kami juga",
    }.items()
}
_WORDS = re.compile(r"[^\W\d_]+")


def detect(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None when the text is too short or ambiguous."""
    letters = len(_LETTER.findall(text))
    if letters < 20:
        return None
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPTS}
    script, count = max(counts.items(), key=lambda item: item[1])
    if count > letters * 0.4:
        return _by_script(script, text, counts)
    return _latin(text)


def _by_script(script: str, text: str, counts: dict[str, int]) -> str:
    if script == "cyrillic":
        return "uk" if re.search(r"[іїєґ]", text.lower()) else "ru"
    if script == "arabic":
        return "fa" if re.search(r"[پچژگ]", text) else "ar"
    if script in ("han", "kana"):
        return "ja" if counts["kana"] else "zh"
    return {"greek": "el", "hebrew": "he", "devanagari": "hi", "thai": "th", "hangul": "ko"}[script]


def _latin(text: str) -> str | None:
    words = [word.lower() for word in _WORDS.findall(text)]
    scores = {lang: sum(word in stops for word in words) for lang, stops in _STOPWORDS.items()}
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 3 or top < second * 1.5:
        return None
    return best
