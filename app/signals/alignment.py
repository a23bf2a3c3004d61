"""Token ↔ char alignment through a fast tokenizer's offset mapping (design §2, §9).

Never estimate characters per token: every conversion goes through the offsets a
``PreTrainedTokenizerFast`` returns (``return_offsets_mapping=True``).  An *offset array*
is ``(n_tokens, 2)`` int64 of half-open char ranges into the text that was tokenized;
special tokens have empty ranges ``(0, 0)`` (or any ``start == end``) and never match
a char.  Byte-level BPE offsets may include a leading space (``" clips"``); pass
``text`` to the span converters to trim whitespace from their results.

Token spans and char spans are half-open ``(start, end)`` pairs; arrays of them are
``(k, 2)`` int64.  A char span that touches no token maps to the token span ``(-1, -1)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.signals.arrays import as_offsets as _offsets
from app.signals.arrays import as_spans as _spans
from app.signals.units import inside_units

__all__ = [
    "ProblemTokens",
    "token_char_spans",
    "locate_problem",
    "problem_tokens",
    "char_spans_to_token_spans",
    "token_spans_to_char_spans",
    "trim_span",
    "render_spans",
    "render_token_spans",
    "word_start_tokens",
    "SPAN_OPEN",
    "SPAN_CLOSE",
]

SPAN_OPEN = "⟦"
SPAN_CLOSE = "⟧"


@dataclass(frozen=True)
class ProblemTokens:
    """Where the problem text sits in a tokenized prompt.

    ``token_range``: absolute half-open token range of the problem tokens in the prompt
    (chat-template tokens excluded).  ``char_spans``: ``(n_problem, 2)`` char spans of those
    tokens **relative to the problem text** (clipped to it), row i = token ``token_range[0] + i``.
    """

    token_range: tuple[int, int]
    char_spans: np.ndarray

    @property
    def n_tokens(self) -> int:
        return self.token_range[1] - self.token_range[0]


def token_char_spans(tokenizer: Any, text: str, add_special_tokens: bool = False) -> np.ndarray:
    """Tokenize ``text`` with a fast tokenizer → offsets ``(n_tokens, 2)`` int64 (chars of ``text``)."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return _offsets(np.asarray(enc["offset_mapping"], dtype=np.int64))


def locate_problem(prompt: str, problem_text: str) -> tuple[int, int]:
    """Char range of ``problem_text`` inside ``prompt`` (e.g. after the chat template).

    Raises ``ValueError`` when it is absent or occurs more than once (ambiguous).
    """
    start = prompt.find(problem_text)
    if start < 0 or not problem_text:
        raise ValueError("problem text not found in prompt")
    if prompt.find(problem_text, start + 1) >= 0:
        raise ValueError("problem text occurs more than once in prompt")
    return start, start + len(problem_text)


def problem_tokens(prompt_offsets: Any, problem_char_range: tuple[int, int]) -> ProblemTokens:
    """Prompt offsets ``(n_prompt, 2)`` + the problem's char range in the prompt → :class:`ProblemTokens`.

    A token belongs to the problem when its (non-empty) char range overlaps the problem
    range; template tokens and special tokens never do.  The problem tokens must be
    contiguous in the prompt.
    """
    off = _offsets(prompt_offsets)
    c0, c1 = int(problem_char_range[0]), int(problem_char_range[1])
    spans = char_spans_to_token_spans([(c0, c1)], off)
    t0, t1 = (int(v) for v in spans[0])
    if t0 < 0:
        raise ValueError("no token overlaps the problem text")
    inside = off[t0:t1]
    nonempty = inside[:, 1] > inside[:, 0]
    if np.any(nonempty & ((inside[:, 0] >= c1) | (inside[:, 1] <= c0))):
        raise ValueError("problem tokens are not contiguous in the prompt")
    rel = np.clip(inside, c0, c1) - c0
    return ProblemTokens(token_range=(t0, t1), char_spans=rel)


def char_spans_to_token_spans(char_spans: Any, offsets: Any) -> np.ndarray:
    """Char spans ``(k, 2)`` → token spans ``(k, 2)``: the smallest token range covering every
    token whose char range overlaps the span; ``(-1, -1)`` when none does (empty span)."""
    spans = _spans(char_spans)
    off = _offsets(offsets)
    if spans.shape[0] == 0:
        return spans.copy()
    nonempty = off[:, 1] > off[:, 0]
    overlap = (off[None, :, 0] < spans[:, 1:2]) & (off[None, :, 1] > spans[:, 0:1]) & nonempty[None, :]
    overlap &= (spans[:, 1] > spans[:, 0])[:, None]
    any_hit = overlap.any(axis=1)
    first = overlap.argmax(axis=1)
    last = overlap.shape[1] - overlap[:, ::-1].argmax(axis=1)
    out = np.stack([first, last], axis=1)
    out[~any_hit] = -1
    return out


def token_spans_to_char_spans(token_spans: Any, offsets: Any, text: str | None = None) -> np.ndarray:
    """Token spans ``(k, 2)`` → char spans ``(k, 2)``: from the first char to the last char of the
    non-empty tokens in the span; with ``text``, leading/trailing whitespace is trimmed.
    Spans holding no non-empty token map to ``(-1, -1)``."""
    spans = _spans(token_spans)
    off = _offsets(offsets)
    if spans.shape[0] == 0:
        return spans.copy()
    idx = np.arange(off.shape[0])
    member = (idx[None, :] >= spans[:, 0:1]) & (idx[None, :] < spans[:, 1:2]) & (off[:, 1] > off[:, 0])[None, :]
    big = np.iinfo(np.int64).max
    start = np.where(member, off[None, :, 0], big).min(axis=1, initial=big)
    end = np.where(member, off[None, :, 1], -1).max(axis=1, initial=-1)
    out = np.stack([start, end], axis=1)
    out[~member.any(axis=1)] = -1
    if text is not None:
        for i, (s, e) in enumerate(out):
            if s >= 0:
                out[i] = trim_span(text, int(s), int(e))
    return out


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink the char span ``[start, end)`` of ``text`` past leading/trailing whitespace
    (an all-whitespace span collapses to ``(start, start)``)."""
    piece = text[start:end]
    stripped = piece.lstrip()
    if not stripped:
        return start, start
    s = start + (len(piece) - len(stripped))
    return s, s + len(stripped.rstrip())


def render_spans(text: str, spans: Any, labels: Sequence[str] | None = None) -> str:
    """Debug view of char spans: the text with each span wrapped in ⟦…⟧, then one line per span
    ``[i] start:end label 'substring'`` where the substring is exactly ``text[start:end]``.

    Removing the ⟦ ⟧ markers from the first line gives ``text`` back unchanged.
    """
    arr = _spans(spans)
    if labels is not None and len(labels) != arr.shape[0]:
        raise ValueError("labels must match spans")
    events: list[tuple[int, int, int]] = []  # (position, 0 = close / 1 = open, order)
    for i, (s, e) in enumerate(arr):
        if not 0 <= s <= e <= len(text):
            raise ValueError(f"span {i} ({s}, {e}) outside text of length {len(text)}")
        if s == e:
            continue  # empty spans are listed below, not marked
        events.append((int(s), 1, -int(e)))
        events.append((int(e), 0, -int(s)))
    events.sort()
    pieces: list[str] = []
    pos = 0
    for at, kind, _ in events:
        pieces.append(text[pos:at])
        pieces.append(SPAN_OPEN if kind else SPAN_CLOSE)
        pos = at
    pieces.append(text[pos:])
    lines = ["".join(pieces)]
    for i, (s, e) in enumerate(arr):
        label = f" {labels[i]}" if labels is not None else ""
        lines.append(f"[{i}] {s}:{e}{label} {text[s:e]!r}")
    return "\n".join(lines)


def render_token_spans(text: str, token_spans: Any, offsets: Any, labels: Sequence[str] | None = None) -> str:
    """:func:`render_spans` for token spans, converted through ``offsets`` (whitespace-trimmed);
    token spans with no characters are listed as ``(-1, -1)`` and not marked."""
    chars = token_spans_to_char_spans(token_spans, offsets, text)
    ok = chars[:, 0] >= 0
    shown = render_spans(text, chars[ok], None if labels is None else [labels[i] for i in np.flatnonzero(ok)])
    missing = [
        f"[token span {tuple(int(v) for v in _spans(token_spans)[i])}] no characters" for i in np.flatnonzero(~ok)
    ]
    return "\n".join([shown, *missing])


def word_start_tokens(char_spans: Any, text: str) -> np.ndarray:
    """Token char spans ``(n, 2)`` into ``text`` → bool ``(n,)``: True where a CoT segment may start.

    A token may start a segment when it is non-empty and its first char (char offset into ``text``)
    * does not continue a word begun by an earlier token (a word char preceded by a word char);
    * does not lie inside an unbreakable unit — a number ("0.25", "1,000"), a calculator
      annotation ("<<48/2=24>>24") or LaTeX math (``units.unbreakable_spans``);
    * is not before the end of an earlier token: byte-level BPE splits a multi-byte char (×, →, €)
      into several tokens with the same char span, and only the first of them may start a segment
      (otherwise two segments' char spans overlap).

    Used to snap CoT segment boundaries (``jsd.snap_boundaries``).
    """
    spans = _spans(char_spans)
    continues_word = np.zeros(len(text) + 1, dtype=bool)
    for word in re.finditer(r"\w+", text):
        continues_word[word.start() + 1 : word.end()] = True
    starts = np.clip(spans[:, 0], 0, len(text))
    previous_end = np.maximum.accumulate(np.concatenate(([0], spans[:-1, 1]))) if len(spans) else spans[:, 1]
    return (
        (spans[:, 1] > spans[:, 0])
        & ~continues_word[starts]
        & ~inside_units(text)[starts]
        & (spans[:, 0] >= previous_end)
    )
