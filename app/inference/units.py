"""Units of a word problem's numbers and of a candidate program's steps (pure, gold-blind).

Many wrong candidates the vote prefers fail a check a person makes without thinking: they add
dollars to weeks ("$800 − ($240 + $80 per week)"), or answer in dollars when the question asks
"how many weeks". This module reads, from a spaCy parse of the problem text, the unit of each
number mention — a count of something (the noun it modifies, "8 new books" → book), money
("$50" → $), a rate ("$80 per week" → $/week, "Each book costs $5" → $/book, "For every card,
he used 75 toothpicks" → toothpick/card) or a pure number ("4 times", "half", "20%") — and
the unit the question asks for ("How many weeks …" → week, "How much does … cost" → $). A
program's units then follow from its steps: ADD/SUB keep their operands' unit (two different
known units are a *conflict*), MUL/DIV multiply/divide them (rates cancel: $/book × book → $);
constants the program writes itself (60, 7, 100 …) have no known unit, and neither has any
result built from one by MUL/DIV.

A unit is a sorted tuple of ``(lemma, exponent)`` pairs: ``(("$", 1), ("week", -1))`` for
dollars per week, ``()`` for a pure number, None for unknown. Mention indices are those of
:func:`training.examples.mentions_of` (char-span order); all offsets are CHAR offsets.
The checks are heuristics: their worth is what the fitted selector makes of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Unit", "ProblemUnits", "problem_units", "program_units", "unit_checks", "unit_kind", "DIMENSIONLESS"]

Unit = tuple[tuple[str, int], ...]
DIMENSIONLESS: Unit = ()

MONEY = "$"
_MONEY_WORDS = {"dollar": MONEY, "buck": MONEY, "cent": "cent"}
_PURE_WORDS = {"half", "twice", "double", "triple", "thrice", "quarter", "third", "fourth", "fifth", "percent",
               "time", "%", "quadruple", "dozen"}
_RATE_WORDS = {"per", "each", "every", "a", "an"}
# "$12 an hour", "3 times a week": "a"/"an" makes a rate only before these nouns
_ARTICLE_RATE_NOUNS = {"second", "minute", "hour", "day", "week", "month", "year", "night", "morning", "evening",
                       "person", "piece", "pound", "ounce", "kilogram", "gallon", "liter", "mile", "dozen", "box",
                       "pack", "bag", "visit", "trip", "game", "session", "lesson", "class", "ride", "item"}
_IRREGULAR = {"people": "person", "children": "child", "men": "man", "women": "woman", "feet": "foot",
              "teeth": "tooth", "mice": "mouse", "geese": "goose", "dollars": MONEY}
_COST_WORDS = {"cost", "spend", "pay", "money", "earn", "save", "charge", "price", "budget", "profit", "make",
               "sell", "owe", "raise", "collect", "lose", "worth", "tip", "bill", "fee", "income", "salary"}


@dataclass(frozen=True)
class ProblemUnits:
    """Per number mention its unit (None: unknown), and the unit the question asks for."""

    mentions: tuple[Unit | None, ...]
    asked: Unit | None


def _unit(counts: Counter) -> Unit:
    return tuple(sorted((k, v) for k, v in counts.items() if v != 0))


def _noun_lemma(token: Any) -> str:
    """Lower-case singular lemma ("Judges" → judge, people → person, dollars → $)."""
    lemma = token.lemma_.lower()
    lemma = _IRREGULAR.get(lemma, lemma)
    if lemma.endswith("s") and not lemma.endswith("ss") and len(lemma) > 3 and lemma == token.lower_:
        lemma = lemma[:-1]  # a plural the lemmatizer left alone (often a capitalised PROPN)
    return _MONEY_WORDS.get(lemma, lemma)


def _is_noun(token: Any) -> bool:
    return token.pos_ in ("NOUN", "PROPN") and token.lemma_.lower() not in _RATE_WORDS


def _count_noun(number: Any) -> Any | None:
    """The noun a number token counts: its nummod head, the pobj of "16 of the cards", or the
    first noun within three tokens after it (compounds skipped to their head)."""
    if number.dep_ in ("nummod", "quantmod", "compound") and _is_noun(number.head) and number.head.i > number.i:
        return number.head
    for child in number.children:
        if child.dep_ == "prep" and child.lemma_ == "of":
            objects = [c for c in child.children if c.dep_ == "pobj" and _is_noun(c)]
            if objects:
                return objects[0]
    doc = number.doc
    for token in doc[number.i + 1: min(len(doc), number.i + 4)]:
        if token.is_punct or token.pos_ in ("VERB", "AUX", "ADP", "CCONJ", "NUM") and token.lemma_ != "of":
            return None
        if _is_noun(token):
            while token.dep_ == "compound" and _is_noun(token.head) and token.head.i > token.i:
                token = token.head
            return token
    return None


def _rate_noun(after: Any, sentence: Any, numerator: str) -> str | None:
    """The "per X" of a quantity whose last token is ``after``: "per week", "an hour" right after
    it, or an "each/every X" elsewhere in its sentence ("Each book costs $5")."""
    doc = after.doc
    window = doc[after.i + 1: min(sentence.end, after.i + 5)]
    for k, token in enumerate(window):
        if token.is_punct:
            break
        if token.lower_ in ("per", "a", "an", "every", "each"):
            nouns = [t for t in window[k + 1:k + 3] if _is_noun(t)]
            if nouns and _noun_lemma(nouns[0]) != numerator and (
                    token.lower_ not in ("a", "an") or _noun_lemma(nouns[0]) in _ARTICLE_RATE_NOUNS):
                return _noun_lemma(nouns[0])
            if token.lower_ == "each" and not nouns:  # "3 paintings for $50 each", "2 pounds each"
                return _each_of(after, sentence, numerator)
            break
    verb = _governing_verb(after)
    for token in sentence:
        if token.lower_ in ("each", "every") and token.dep_ == "det" and _is_noun(token.head):
            lemma = _noun_lemma(token.head)
            if lemma != numerator and verb is not None and getattr(_governing_verb(token.head), "i", None) == verb.i:
                return lemma
    return None


def _each_of(after: Any, sentence: Any, numerator: str) -> str | None:
    """What a trailing "each" distributes over: the nearest noun before the quantity in its
    sentence that another number counts ("sells 3 of her paintings for $50 each"), else the
    subject of its verb ("the blue weights are 2 pounds each")."""
    doc = after.doc
    counted = [_count_noun(t) for t in doc[sentence.start:after.i] if t.like_num or t.pos_ == "NUM"]
    for noun in sorted((n for n in counted if n is not None and n.i < after.i), key=lambda n: -n.i):
        if _noun_lemma(noun) != numerator:
            return _noun_lemma(noun)
    verb = _governing_verb(after)
    if verb is not None:
        subjects = [c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass") and _is_noun(c)]
        if subjects and _noun_lemma(subjects[0]) != numerator:
            return _noun_lemma(subjects[0])
    return None


def _governing_verb(token: Any) -> Any | None:
    """The nearest verb (or auxiliary) among ``token``'s ancestors: "Each book costs $5" puts
    book and $5 under one verb; "open for 8 hours, and each movie lasts 2 hours" does not."""
    for ancestor in token.ancestors:
        if ancestor.pos_ in ("VERB", "AUX"):
            return ancestor
    return None


def _mention_unit(doc: Any, start: int, end: int, text: str, kind: str) -> Unit | None:
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is None or not len(span):
        return None
    number = span[-1]
    before = doc[span.start - 1] if span.start > 0 else None
    following = doc[span.end] if span.end < len(doc) else None
    lowered = text.lower()
    if kind == "percent" or lowered in _PURE_WORDS or (following is not None and following.lemma_.lower() in _PURE_WORDS):
        return DIMENSIONLESS
    if kind == "fraction":  # "3/5 of the goldfish", "one third"
        return DIMENSIONLESS
    if kind == "money" or "$" in text or (before is not None and before.text == "$"):
        numerator, last = MONEY, number
    elif following is not None and following.lemma_.lower() in _MONEY_WORDS:
        numerator, last = _MONEY_WORDS[following.lemma_.lower()], following
    else:
        noun = _count_noun(number)
        if noun is None:
            return None
        numerator, last = _noun_lemma(noun), noun
    counts = Counter({numerator: 1})
    rate = _rate_noun(last, number.sent, numerator)
    if rate is not None:
        counts[rate] -= 1
    return _unit(counts)


def _asked_unit(doc: Any, money_in_text: bool) -> Unit | None:
    """The unit the question (the last sentence with a "?", else the last sentence) asks for."""
    sentences = list(doc.sents)
    if not sentences:
        return None
    question = next((s for s in reversed(sentences) if "?" in s.text), sentences[-1])
    words = [t.lower_ for t in question]
    for token in question:
        if token.lower_ == "many" and token.i > 0 and doc[token.i - 1].lower_ == "how":
            head = token.head if _is_noun(token.head) else next(
                (t for t in doc[token.i + 1: min(question.end, token.i + 4)] if _is_noun(t)), None)
            if head is None:
                return None
            lemma = _noun_lemma(head)
            return DIMENSIONLESS if lemma in _PURE_WORDS else ((lemma, 1),)
        if token.lower_ == "much" and token.i > 0 and doc[token.i - 1].lower_ == "how":
            after = doc[token.i + 1] if token.i + 1 < question.end else None
            if after is not None and _is_noun(after):
                lemma = _noun_lemma(after)
                return ((MONEY, 1),) if lemma == "money" else ((lemma, 1),)
            lemmas = {t.lemma_.lower() for t in question}
            return ((MONEY, 1),) if money_in_text and lemmas & _COST_WORDS else None
    if "percent" in words or "percentage" in words or "%" in words:
        return DIMENSIONLESS
    lemmas = {t.lemma_.lower() for t in question}
    if money_in_text and lemmas & {"cost", "price", "profit", "money", "earning", "amount"} and "what" in words:
        return ((MONEY, 1),)
    return None


def problem_units(text: str, mentions: Sequence[Any], nlp: Any | None = None) -> ProblemUnits:
    """Units of ``mentions`` (objects with char ``start``/``end``, ``text``, ``kind``, as
    :class:`app.inference.proposals.MentionView`) and of the question of ``text``.

    ``nlp`` is a spaCy pipeline (default: :func:`app.signals.clauses.load_spacy`)."""
    if nlp is None:
        from app.signals.clauses import load_spacy

        nlp = load_spacy()
    doc = nlp(text)
    units = tuple(_mention_unit(doc, int(m.start), int(m.end), str(m.text), str(m.kind)) for m in mentions)
    money = any(u is not None and any(name == MONEY for name, _ in u) for u in units)
    return ProblemUnits(units, _asked_unit(doc, money))


def unit_kind(unit: Unit | None) -> str | None:
    """``money`` ($ alone), ``rate`` (a negative exponent), ``product`` (exponents summing past 1),
    ``pure`` (``()``), ``count`` (one noun); None for an unknown unit."""
    if unit is None:
        return None
    if not unit:
        return "pure"
    if unit == ((MONEY, 1),):
        return "money"
    if any(power < 0 for _, power in unit):
        return "rate"
    return "product" if sum(power for _, power in unit) > 1 else "count"


def _combine(op: str, units: Sequence[Unit | None]) -> tuple[Unit | None, bool]:
    """(result unit, conflict) of one step over its operands' units. ADD/SUB of two different
    known units is a conflict unless both are plain counts (3 lions + 2 elephants: animals,
    whose unit is then unknown)."""
    if op in ("ADD", "SUB"):
        known = list(dict.fromkeys(u for u in units if u is not None and u != DIMENSIONLESS))
        if len(known) > 1:
            counts_only = all(unit_kind(u) == "count" for u in known)
            return None, not counts_only
        if known:
            return known[0], False
        return (DIMENSIONLESS if units and all(u == DIMENSIONLESS for u in units) else None), False
    if op in ("MUL", "DIV") and units and all(u is not None for u in units):
        counts: Counter = Counter(dict(units[0]))
        for u in units[1:]:
            for name, power in u:
                counts[name] += power if op == "MUL" else -power
        return _unit(counts), False
    return None, False


def program_units(steps: Sequence[Any], units: ProblemUnits) -> tuple[list[Unit | None], int]:
    """(unit per step, number of ADD/SUB steps joining two different known units) of a program.

    ``steps`` have ``.op`` and ``.operands`` as the search's :class:`~app.inference.search.PlannedStep`:
    ``("problem", i, reading)`` (reading ``reciprocal`` / ``percent`` makes it a pure number),
    ``("step", j)`` (0-based) or ``("constant", c)`` (unknown unit)."""
    results: list[Unit | None] = []
    conflicts = 0
    for step in steps:
        operand_units: list[Unit | None] = []
        for c in step.operands:
            if c[0] == "problem":
                i = int(c[1])
                operand_units.append(DIMENSIONLESS if c[2] in ("reciprocal", "percent")
                                     else (units.mentions[i] if i < len(units.mentions) else None))
            elif c[0] == "step":
                j = int(c[1])
                operand_units.append(results[j] if 0 <= j < len(results) else None)
            else:
                operand_units.append(None)
        unit, conflict = _combine(step.op, operand_units)
        results.append(unit)
        conflicts += conflict
    return results, conflicts


def unit_checks(steps: Sequence[Any], units: ProblemUnits | None) -> tuple[float, float, float, float]:
    """Of a program (its last step is its answer): (ADD/SUB unit conflicts, answer unit = asked
    unit, answer unit ≠ asked unit, answer unit of another :func:`unit_kind` than the asked one —
    dollars for "how many weeks"); zeros without units or where a unit is unknown."""
    if units is None or not steps:
        return 0.0, 0.0, 0.0, 0.0
    per_step, conflicts = program_units(steps, units)
    answer, asked = per_step[-1], units.asked
    known = answer is not None and asked is not None
    return (float(conflicts), float(known and answer == asked), float(known and answer != asked),
            float(known and unit_kind(answer) != unit_kind(asked)))
