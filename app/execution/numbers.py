"""Find number mentions (digits, money, percents, fractions, number words) in text.

All offsets are character offsets into the original string (``start`` inclusive,
``end`` exclusive), so ``text[m.start:m.end] == m.text`` always holds.  Values
are the exact *literal* value of the mention: ``"50%"`` is 50 (not 1/2),
``"$3.50"`` is 7/2, ``"half"`` is 1/2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import sympy

__all__ = ["NumberMention", "find_numbers", "NUMBER_KINDS", "MAX_NUMERAL_CHARS"]

NUMBER_KINDS: tuple[str, ...] = ("integer", "decimal", "fraction", "percent", "money", "word")
MAX_NUMERAL_CHARS = 100  # longer digit runs are not reported as numbers


@dataclass(frozen=True)
class NumberMention:
    """One number written in a text, located by character offsets."""

    start: int  # char offset into the text, inclusive
    end: int  # char offset, exclusive; text[start:end] == self.text
    text: str
    value: sympy.Rational  # exact literal value
    kind: str  # 'integer' | 'decimal' | 'fraction' | 'percent' | 'money' | 'word'


# A plain numeral: "1,000", "1,234.5", "12", "3.50", ".5".  Thousands groups must
# be exactly three digits and not run on into more digits ("1,2345" is not one).
_NUMERAL = r"(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?(?!\.\d)|\.\d+"
_MINUS = "-\u2212"  # ASCII hyphen-minus and the unicode minus sign
_UNICODE_FRACTIONS: dict[str, Fraction] = {
    "\u00bd": Fraction(1, 2), "\u2153": Fraction(1, 3), "\u2154": Fraction(2, 3),
    "\u00bc": Fraction(1, 4), "\u00be": Fraction(3, 4), "\u2155": Fraction(1, 5),
    "\u2156": Fraction(2, 5), "\u2157": Fraction(3, 5), "\u2158": Fraction(4, 5),
    "\u2159": Fraction(1, 6), "\u215a": Fraction(5, 6), "\u215b": Fraction(1, 8),
    "\u215c": Fraction(3, 8), "\u215d": Fraction(5, 8), "\u215e": Fraction(7, 8),
}
_UFRAC_CLASS = "".join(_UNICODE_FRACTIONS)

# Never start inside another numeral or word (but "5x3" has two numbers).  A
# leading minus counts as a sign only when it cannot be a binary minus or a
# hyphen: "5-3" and "x-2" have no negative number, "then -3" has one.
_NUMERIC_RE = re.compile(
    rf"(?<![0-9A-WYZa-wyz_./])"
    rf"(?P<sign>[{_MINUS}](?=\$ ?\.?\d|\.?\d))?"
    rf"(?P<dollar>\$ ?)?"
    rf"(?P<num>{_NUMERAL})"
    rf"(?:(?P<mixed> (?P<mnum>\d{{1,18}})/(?P<mden>\d{{1,18}}))(?![\d/]))?"
    rf"(?:(?P<slash>/)(?P<den>\d{{1,18}})(?![\d/.]))?"
    rf"(?P<ufrac>[{_UFRAC_CLASS}])?"
    rf"(?P<pct> ?%| percent\b)?"
)
_SIGN_PRECEDER_RE = re.compile(r"[\w)\].,%$/]")
_UFRAC_ALONE_RE = re.compile(rf"[{_UFRAC_CLASS}]")

_UNITS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9,
}
_TEENS: dict[str, int] = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS: dict[str, int] = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES: dict[str, int] = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_MULTIPLIER_WORDS: dict[str, Fraction] = {
    "half": Fraction(1, 2), "twice": Fraction(2), "double": Fraction(2),
    "triple": Fraction(3), "thrice": Fraction(3), "dozen": Fraction(12),
}
_WORD_RE = re.compile(r"[A-Za-z]+")


def find_numbers(text: str) -> list[NumberMention]:
    """All number mentions in ``text``, sorted by ``start`` and non-overlapping.

    Recognises integers (``1,000``, ``-3``), decimals (``3.5``), fractions
    (proper ``3/4``, mixed ``2 1/2``, unicode ``½``), percents (``50%``,
    ``12 percent``), money (``$3.50``) and number words (``one``..``ninety-nine``,
    ``hundred``, ``thousand``, compounds like ``two hundred fifty``, plus
    ``half``, ``twice``, ``double``, ``triple``, ``thrice``, ``dozen``).
    ``a/b`` counts as one fraction only when ``a < b`` (``48/2`` is two
    integers: a division, not a fraction literal).
    """
    mentions = _numeric_mentions(text) + _word_mentions(text)
    mentions.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[NumberMention] = []
    for mention in mentions:
        if kept and mention.start < kept[-1].end:
            continue
        kept.append(mention)
    return kept


def _numeric_mentions(text: str) -> list[NumberMention]:
    """Mentions written with digits (or unicode vulgar fractions)."""
    found: list[NumberMention] = []
    pos = 0
    while True:
        match = _NUMERIC_RE.search(text, pos)
        if match is None:
            break
        if len(match.group("num")) > MAX_NUMERAL_CHARS:  # not a quantity; also keeps int() cheap
            pos = match.end()
            continue
        mention = _numeric_from_match(text, match)
        found.extend(mention)
        pos = max(match.start() + 1, mention[-1].end if mention else match.start() + 1)
    attached = {m.end - 1 for m in found if m.text[-1] in _UNICODE_FRACTIONS}  # "2½"
    for match in _UFRAC_ALONE_RE.finditer(text):
        start = match.start()
        if start in attached:
            continue
        value = _UNICODE_FRACTIONS[match.group()]
        found.append(NumberMention(start, match.end(), match.group(), _rational(value), "fraction"))
    return found


def _numeric_from_match(text: str, match: re.Match[str]) -> list[NumberMention]:
    """Turn one regex match into mentions (two when ``a/b`` is a division)."""
    start = match.start()
    sign = match.group("sign")
    if sign and start > 0 and _SIGN_PRECEDER_RE.match(text[start - 1]):
        sign, start = None, start + 1
    num_text = match.group("num")
    dollar = match.group("dollar")
    plain_integer = re.fullmatch(r"\d+", num_text) is not None
    value = Fraction(num_text.replace(",", ""))
    kind = "money" if dollar else ("decimal" if "." in num_text else "integer")
    end = match.end("num")
    extras: list[NumberMention] = []

    fraction_allowed = plain_integer and not dollar
    if match.group("mixed") and fraction_allowed:
        numerator, denominator = int(match.group("mnum")), int(match.group("mden"))
        if 0 < numerator < denominator:
            value += Fraction(numerator, denominator)
            kind, end = "fraction", match.end("mixed")
    if match.group("slash") and end == match.end("num"):
        denominator = int(match.group("den"))
        if fraction_allowed and value < denominator:
            value = Fraction(int(value), denominator)
            kind, end = "fraction", match.end("den")
        else:
            extras.append(NumberMention(match.start("den"), match.end("den"), match.group("den"),
                                        _rational(Fraction(denominator)), "integer"))
    if match.group("ufrac") and end == match.end("num") and fraction_allowed:
        value += _UNICODE_FRACTIONS[match.group("ufrac")]
        kind, end = "fraction", match.end("ufrac")
    if match.group("pct") and end == match.start("pct") and not dollar and not extras:
        kind, end = "percent", match.end("pct")
    if sign:
        value = -value
    head = NumberMention(start, end, text[start:end], _rational(value), kind)
    return [head, *extras]


def _word_mentions(text: str) -> list[NumberMention]:
    """Mentions written as English number words."""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD_RE.finditer(text)]
    found: list[NumberMention] = []
    index = 0
    while index < len(words):
        start, end, word = words[index]
        if word in _MULTIPLIER_WORDS:
            found.append(NumberMention(start, end, text[start:end],
                                       _rational(_MULTIPLIER_WORDS[word]), "word"))
            index += 1
            continue
        consumed, value = _parse_cardinal(text, words, index)
        if consumed == 0:
            index += 1
            continue
        last_end = words[index + consumed - 1][1]
        found.append(NumberMention(start, last_end, text[start:last_end],
                                   _rational(Fraction(value)), "word"))
        index += consumed
    return found


def _parse_cardinal(text: str, words: list[tuple[int, int, str]], first: int) -> tuple[int, int]:
    """Greedily read a cardinal like ``two hundred fifty-one``.

    Returns ``(number of words consumed, value)``; ``(0, 0)`` when ``words[first]``
    does not start a cardinal.  Words must be separated by a single space or
    hyphen.
    """
    total = 0  # sum of completed scale groups (thousands, millions, ...)
    group = 0  # current group below 1000
    last = ""  # category of the previous word
    last_scale = 10**12
    consumed = 0
    index = first
    while index < len(words):
        start, _end, word = words[index]
        if index > first:
            gap = text[words[index - 1][1]:start]
            if gap not in (" ", "-"):
                break
        if word in _UNITS:
            if last not in ("", "tens", "hundred", "scale") or (last == "tens" and _UNITS[word] == 0):
                break
            group += _UNITS[word]
            last = "unit"
        elif word in _TEENS:
            if last not in ("", "hundred", "scale"):
                break
            group += _TEENS[word]
            last = "teen"
        elif word in _TENS:
            if last not in ("", "hundred", "scale"):
                break
            group += _TENS[word]
            last = "tens"
        elif word == "hundred":
            if last not in ("", "unit", "teen", "tens") or group >= 100:
                break
            group = (group or 1) * 100
            last = "hundred"
        elif word in _SCALES:
            scale = _SCALES[word]
            if last == "scale" or scale >= last_scale:
                break
            total += (group or 1) * scale
            group = 0
            last_scale = scale
            last = "scale"
        else:
            break
        consumed += 1
        index += 1
    return (consumed, total + group) if consumed else (0, 0)


def _rational(value: Fraction) -> sympy.Rational:
    """Exact sympy rational from a Python fraction."""
    return sympy.Rational(value.numerator, value.denominator)
