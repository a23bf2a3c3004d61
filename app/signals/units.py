"""Unbreakable text units: numbers, GSM8K calculator annotations and LaTeX math (char offsets).

A CoT segment boundary must never fall inside a unit ("0.|2", "<<48/|2=24>>", "$\\frac{1}|{2}$"),
and clause expansion treats LaTeX as atomic. All positions are **char** offsets into the text;
spans are half-open ``(start, end)``.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["LATEX_RE", "latex_spans", "unbreakable_spans", "inside_units"]

LATEX_RE = re.compile(
    r"\$\$.+?\$\$"  # display math
    r"|\\\(.+?\\\)|\\\[.+?\\\]"  # \( … \)  and  \[ … \]
    r"|(?<![\\$])\$(?=\S)(?:\\\$|[^$])+?(?<=\S)(?<!\\)\$(?!\d)",  # inline $…$, not "$5 and $6"
    re.DOTALL,
)
_NUMBER = r"\d+(?:[.,]\d+)*"  # 1,000  3.50  0.25
_NUMBER_RE = re.compile(_NUMBER)
_CALCULATOR_RE = re.compile(r"<<[^<>\n]*>>(?:" + _NUMBER + ")?")  # <<48/2=24>>24, the result glued on
_DISPLAY_BREAK_RE = re.compile(r"\\\\\s*")  # \\ line break inside display math (align, array)


def latex_spans(text: str) -> list[tuple[int, int]]:
    """Char spans of LaTeX math in ``text`` (delimiters included).  Money such as
    "$5 and $6" or "$3.50" is not math: inline ``$…$`` must not start or end with a space
    and must not be followed by a digit."""
    return [m.span() for m in LATEX_RE.finditer(text)]


def _math_units(text: str) -> list[tuple[int, int]]:
    """Inline math spans whole; display math (``$$…$$``, ``\\[…\\]``) cut after each ``\\\\`` line
    break, so a multi-line derivation can still be segmented between its lines."""
    units: list[tuple[int, int]] = []
    for match in LATEX_RE.finditer(text):
        start, end = match.span()
        if text.startswith(("$$", "\\["), start):
            cuts = [m.end() + start for m in _DISPLAY_BREAK_RE.finditer(match.group()) if m.end() + start < end]
            edges = [start, *cuts, end]
            units.extend(zip(edges[:-1], edges[1:]))
        else:
            units.append((start, end))
    return units


def unbreakable_spans(text: str) -> np.ndarray:
    """Char spans ``(k, 2)`` int64 of the units of ``text`` a boundary must not cut: numbers,
    calculator annotations ``<<…>>`` (with the result that follows them) and LaTeX math (unsorted,
    may overlap)."""
    spans = [m.span() for m in _NUMBER_RE.finditer(text)]
    spans += [m.span() for m in _CALCULATOR_RE.finditer(text)]
    spans += _math_units(text)
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def inside_units(text: str) -> np.ndarray:
    """Bool ``(len(text) + 1,)``: True at char position c when c lies strictly inside a unit
    (``start < c < end``), i.e. a token starting at c would cut the unit."""
    spans = unbreakable_spans(text)
    marks = np.zeros(len(text) + 2, dtype=np.int64)
    np.add.at(marks, spans[:, 0] + 1, 1)
    np.add.at(marks, spans[:, 1], -1)
    return np.cumsum(marks)[: len(text) + 1] > 0
