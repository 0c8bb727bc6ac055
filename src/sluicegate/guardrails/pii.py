"""PII: emails, phone numbers, credit cards (Luhn), IBANs (mod 97), US SSNs and IP addresses.

Patterns find candidates; validators decide. A card number must pass Luhn and carry a known issuer prefix,
an IBAN its country's length and checksum, a phone number a plausible digit count and no context that makes
it an order, invoice or tracking number. Person names and postal addresses need a model: they come from the
optional Presidio backend (`backend: presidio`, extra `sluicegate[presidio]`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from sluicegate.guardrails.base import Check, Detector, Finding, Subject, drop_overlaps, run_detectors, select_entities

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig

BUILTIN = ("EMAIL", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "PHONE")
#: entity types only the Presidio backend finds
MODEL_ONLY = ("PERSON", "LOCATION")

# --- validators -----------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tiff"})


def _email_ok(address: str, after: str) -> bool:
    # icon@2x.png is a file name; git@github.com:org/repo is an SSH remote, not a person's address
    return address.rsplit(".", 1)[-1].lower() not in _IMAGE_SUFFIXES and after != ":"


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _issuer_known(digits: str) -> bool:
    length, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return length in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16  # Mastercard
    if two in (34, 37):
        return length == 15  # American Express
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649:
        return 16 <= length <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= length <= 19  # JCB
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= length <= 19  # Diners Club
    if two == 62:
        return 16 <= length <= 19  # UnionPay
    return False


def _card_ok(match: re.Match[str], text: str) -> bool:
    raw = match.group(0)
    digits = raw.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    separators = {char for char in raw if char in " -"}
    if len(separators) > 1:
        return False
    if separators:
        groups = tuple(len(group) for group in re.split(r"[ -]", raw))
        if groups not in _CARD_GROUPS:
            return False
    return _issuer_known(digits) and luhn_ok(digits)


_CARD_GROUPS = frozenset({(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 4, 2)})

#: ISO 13616 lengths of the countries that issue IBANs
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban_span(match: re.Match[str], text: str) -> tuple[int, int] | None:
    """The IBAN is as long as its country says: the regex may have run on into the next word."""
    wanted = _IBAN_LENGTHS.get(match.group(0)[:2].upper())
    if wanted is None:
        return None
    seen = 0
    end = match.start()
    for index in range(match.start(), match.end()):
        if text[index] != " ":
            seen += 1
            if seen == wanted:
                end = index + 1
                break
    if seen < wanted or (end < len(text) and text[end].isalnum()):
        return None
    return (match.start(), end) if iban_ok(text[match.start() : end]) else None


def _ssn_parts_ok(area: str, group: str, serial: str) -> bool:
    # never issued: area 000, 666 and 900-999, group 00, serial 0000
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssn_ok(match: re.Match[str], text: str) -> bool:
    if not _ssn_parts_ok(match.group(1), match.group(3), match.group(4)):
        return False
    # 123 45 6789 is as often an invoice or a part number: only with words that say it is an SSN
    return match.group(2) == "-" or _context_says(text, match.start(), _SSN_WORDS, last=4)


def _ssn_bare_ok(match: re.Match[str], text: str) -> bool:
    digits = match.group(0)
    return _ssn_parts_ok(digits[:3], digits[3:5], digits[5:]) and _context_says(text, match.start(), _SSN_WORDS, last=4)


_SSN_WORDS = frozenset({"ssn", "social", "security", "soc", "sec"})


def _ipv4_ok(match: re.Match[str], text: str) -> bool:
    octets = match.group(0).split(".")
    if any(int(octet) > 255 or (len(octet) > 1 and octet[0] == "0") for octet in octets):
        return False
    return not _context_says(text, match.start(), _VERSION, last=1)


def _ipv6_ok(match: re.Match[str], text: str) -> bool:
    candidate = match.group(0)
    if sum(1 for group in candidate.split(":") if group) < 3:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


# Context is the last few words before a candidate, looked up in sets: a regex anchored at the end of a
# window would be retried at every position of it, for every candidate (slow on adversarial digit runs).
_PHONE_WORDS = frozenset(
    [
        "phone",
        "tel",
        "telephone",
        "call",
        "mobile",
        "cell",
        "fax",
        "whatsapp",
        "sms",
        "text",
        "dial",
        "reach",
        "contact",
        "ring",
        "handy",
        "telefon",
        "téléphone",
        "teléfono",
        "portable",
        "hotline",
    ]
)
_NOT_PERSONAL = frozenset(
    [
        "order",
        "invoice",
        "tracking",
        "ref",
        "reference",
        "account",
        "acct",
        "isbn",
        "issn",
        "serial",
        "sku",
        "ticket",
        "case",
        "transaction",
        "confirmation",
        "booking",
        "item",
        "part",
        "model",
        "batch",
        "lot",
        "po",
        "id",
        "nr",
        "version",
        "build",
        "patent",
        "zip",
        "receipt",
        "shipment",
        "parcel",
        "customer",
        "member",
        "policy",
        "claim",
        "meeting",
        "#",
        "no",
    ]
)
_VERSION = frozenset({"version", "ver", "release", "build", "v"})
_CONTEXT_WORD = re.compile(r"[^\W\d_]+|#")


def _context_says(text: str, start: int, words: frozenset[str], last: int = 3) -> bool:
    """Whether one of the `last` words right before `start` is in `words`."""
    before = _CONTEXT_WORD.findall(text, max(0, start - 32), start)
    return any(word.lower() in words for word in before[-last:])


def _phone_context(text: str, start: int) -> str | None:
    """phone or other, by the nearest telling word among the last three: "order number is" is other."""
    for word in reversed(_CONTEXT_WORD.findall(text, max(0, start - 32), start)[-3:]):
        word = word.lower()
        if word in _PHONE_WORDS:
            return "phone"
        if word in _NOT_PERSONAL:
            return "other"
    return None


def _phone_ok(match: re.Match[str], text: str) -> bool:
    raw = match.group(0)
    digits = sum(char.isdigit() for char in raw)
    context = _phone_context(text, match.start())
    if context == "other":
        return False
    if context == "phone":
        return 7 <= digits <= 15
    if raw.startswith("+") or re.match(r"00[1-9]", raw):
        return 8 <= digits <= 15
    groups = [len(group) for group in re.findall(r"\d+", raw)]
    return digits in (10, 11) and _looks_national(raw, groups)


def _looks_national(raw: str, groups: list[int]) -> bool:
    """Grouping as national phone numbers are written, rather than dates, amounts, versions or codes."""
    if "." in raw and len(groups) == 4 and max(groups) <= 3:
        return False  # an IPv4 address or a version number
    if len(groups) >= 3 and all(group == 3 for group in groups[1:]):
        return False  # thousands separators: 8 045 311 447
    if all(group == 4 for group in groups):
        return False  # years, PIN blocks, card fragments
    if min(groups[1:]) < 2:
        return False
    # numbers end in a group of 3 or more digits unless written in pairs (06 12 34 56 78)
    return groups[-1] >= 3 or all(group == 2 for group in groups[1:])


def _phone_bare_ok(match: re.Match[str], text: str) -> bool:
    return _phone_context(text, match.start()) == "phone"


# --- the patterns -----------------------------------------------------------------------------------------

#: every number-based finding overlaps a run of 7+ digits (single separators allowed): prose without one
#: costs one scan for all of them
_DIGITS = re.compile(r"[0-9][0-9 .()+-]{5,80}[0-9]")
#: an email is found from its @ (a literal the regex engine finds fast), then widened to its local part
_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


def _email_span(match: re.Match[str], text: str) -> tuple[int, int] | None:
    at = start = match.start()
    while start > 0 and at - start < 64 and text[start - 1] in _LOCAL_PART:
        start -= 1
    if start > 0 and (text[start - 1] in _LOCAL_PART or text[start - 1].isalnum() or text[start - 1] == "_"):
        return None  # a local part over 64 characters, or glued to a word
    while start < at and not text[start].isalnum():
        start += 1
    if start == at or not _email_ok(text[start : match.end()], text[match.end() : match.end() + 1]):
        return None
    return start, match.end()


DETECTORS: tuple[Detector, ...] = (
    Detector("EMAIL", _EMAIL_DOMAIN, needles=("@",), refine=_email_span),
    Detector("CREDIT_CARD", re.compile(r"(?<![\w.+-])(?:\d[ -]?){12,18}\d(?![\w-])"), validate=_card_ok, gate=_DIGITS),
    Detector(
        "IBAN",
        re.compile(r"(?<!\w)[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?"),
        refine=_iban_span,
        gate=_DIGITS,
    ),
    Detector("US_SSN", re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])"), validate=_ssn_ok, gate=_DIGITS),
    Detector(
        "US_SSN",
        re.compile(r"(?<![\w-])(\d{9})(?![\w-])"),
        needles=("ssn", "soc"),
        lowered=True,
        validate=_ssn_bare_ok,
        gate=_DIGITS,
    ),
    Detector(
        "IP_ADDRESS",
        re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"),
        validate=_ipv4_ok,
        gate=_DIGITS,
    ),
    Detector(
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        needles=("::", ":0", ":1", ":2", ":3", ":4", ":5", ":6", ":7", ":8", ":9", ":a", ":b", ":c", ":d", ":e", ":f"),
        lowered=True,
        validate=_ipv6_ok,
    ),
    Detector(
        "PHONE",
        re.compile(
            r"(?<![\w+/.#-])(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,8}(?:[ .-]\d{1,8}){1,5}(?!\w|[.-]\d)"
        ),
        validate=_phone_ok,
        gate=_DIGITS,
    ),
    Detector("PHONE", re.compile(r"(?<![\w+/.#-])(?:\+|00)[1-9]\d{7,14}(?!\w)"), needles=("+", "00"), gate=_DIGITS),
    Detector("PHONE", re.compile(r"(?<![\w+/.#-])\d{7,12}(?!\w)"), validate=_phone_bare_ok, gate=_DIGITS),
)


class PiiCheck(Check):
    window = 128

    def __init__(self, entities: frozenset[str], presidio: object | None = None) -> None:
        self.detectors = tuple(d for d in DETECTORS if d.entity in entities)
        #: the optional model backend for PERSON and LOCATION (see presidio.py)
        self.presidio = presidio

    def scan(self, text: str, subject: Subject) -> list[Finding]:
        findings = run_detectors(self.detectors, text)
        if self.presidio is not None:
            findings.extend(self.presidio.analyze(text))  # type: ignore[attr-defined]
        return drop_overlaps(findings)


def build(config: GuardrailConfig) -> PiiCheck:
    if config.backend not in ("builtin", "presidio"):
        raise ValueError(f".backend: expected builtin or presidio, got '{config.backend}'")
    known = BUILTIN + MODEL_ONLY if config.backend == "presidio" else BUILTIN
    entities = select_entities(known, config.entities)
    if config.entities is None and config.backend == "builtin":
        entities = frozenset(BUILTIN)
    presidio = None
    model_entities = sorted(entities & set(MODEL_ONLY))
    if config.backend == "presidio" and model_entities:
        from sluicegate.guardrails.presidio import PresidioRecognizer

        presidio = PresidioRecognizer(
            model_entities, config.presidio_model, config.presidio_language, config.presidio_score
        )
    return PiiCheck(entities, presidio)
