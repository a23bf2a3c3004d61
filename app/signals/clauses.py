"""Clause expansion (design §2.3): high-IAF problem tokens → whole clauses → merged char regions.

spaCy parses the problem (dependency parse + sentences).  Each token belongs to the
nearest *clause head* among itself and its ancestors: ROOT, or a verb/aux attached by a
clause label (``conj``, ``advcl``, ``relcl``, ``ccomp``, … — ``ClauseConfig.clause_deps``).
A clause is the tokens a head owns (its dependency subtree minus the subtrees of nested
clause heads), cut to the head's sentence and trimmed of edge punctuation, coordinating
conjunctions and connectives ("then"); its region is the char hull of those tokens.
LaTeX math (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``) is atomic: before parsing each
math span is replaced by a same-length, space-delimited placeholder word, so offsets are
unchanged, the placeholder never fuses with a neighbouring word, and a region never cuts a
formula.

All positions here are **char** offsets into the problem text.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from app.signals.alignment import trim_span
from app.signals.arrays import as_spans, to_numpy
from app.signals.config import ClauseConfig, SignalConfig
from app.signals.iaf import high_iaf_tokens
from app.signals.units import latex_spans

__all__ = [
    "Region",
    "load_spacy",
    "latex_spans",
    "mask_latex",
    "parse_problem",
    "clause_spans",
    "expand_to_clauses",
    "merge_spans",
    "problem_regions",
    "problem_regions_per_segment",
]

_CLAUSE_POS = frozenset({"VERB", "AUX"})


@dataclass(frozen=True)
class Region:
    """A contiguous char region of the problem text.

    ``start_char``/``end_char``: half-open char offsets into the problem text.
    ``score``: IAF mass of the problem tokens overlapping the region (0…1).
    ``source``: ``'clause'`` (spaCy clause) or ``'token'`` (the seed token itself: no
    spaCy token under it).  ``seeds``: problem-token indices (of the teacher tokenizer)
    that produced the region.
    """

    start_char: int
    end_char: int
    score: float
    source: str
    seeds: tuple[int, ...] = field(default=())


@lru_cache(maxsize=8)
def load_spacy(model_names: tuple[str, ...] = ClauseConfig().spacy_models) -> Any:
    """Load the first spaCy pipeline in ``model_names`` that is installed.

    Each model is loaded once per process (shared by every name tuple that resolves to it).
    Tries ``spacy.load(name)``, then the package's own ``load()``; raises ``OSError`` listing
    every name when none loads.
    """
    errors: list[str] = []
    for name in model_names:
        try:
            return _load_spacy_model(name)
        except OSError as exc:
            errors.append(str(exc))
    raise OSError("no spaCy model could be loaded: " + "; ".join(errors))


@lru_cache(maxsize=8)
def _load_spacy_model(name: str) -> Any:
    import spacy

    try:
        return spacy.load(name)
    except OSError as exc:  # not registered as a package or path: try importing it as a module
        first = exc
    try:
        return importlib.import_module(name).load()
    except (ImportError, AttributeError, OSError) as exc:
        raise OSError(f"{name}: {first}; import: {exc}") from exc


def mask_latex(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Replace each span by a same-length placeholder word ("Xxxx…") so that spaCy sees one
    noun-like token and every char offset is preserved.

    The placeholder stays space-delimited: where the span touches a non-space char outside it
    ("\\]Find", "(a$x$"), its edge char becomes a space instead of "x", so the placeholder never
    fuses with the neighbouring word into one spaCy token.
    """
    out = list(text)
    for s, e in spans:
        if e - s <= 0:
            continue
        piece = ["x"] * (e - s)
        piece[0] = "X"
        if e - s >= 3 and s > 0 and not text[s - 1].isspace():
            piece[0], piece[1] = " ", "X"
        if e - s >= 3 and e < len(text) and not text[e].isspace():
            piece[-1] = " "
        out[s:e] = piece
    return "".join(out)


@lru_cache(maxsize=512)
def parse_problem(text: str, config: ClauseConfig = ClauseConfig()) -> Any:
    """spaCy ``Doc`` of ``text`` (LaTeX masked when ``config.latex_atomic``); cached per text.

    Token ``idx`` values are char offsets into ``text`` itself.  Treat the Doc as read-only.
    """
    nlp = load_spacy(config.spacy_models)
    masked = mask_latex(text, latex_spans(text)) if config.latex_atomic else text
    return nlp(masked)


def _is_clause_head(token: Any, clause_deps: frozenset[str]) -> bool:
    if token.dep_ == "ROOT" or token.head.i == token.i:
        return True
    return token.dep_ in clause_deps and token.pos_ in _CLAUSE_POS


def _droppable(tok: Any, head: Any, trim_words: frozenset[str], leading: bool) -> bool:
    """Edge tokens cut from a clause: punctuation, spaces, coordinators, leading connectives."""
    if tok.is_punct or tok.is_space or tok.dep_ in ("cc", "punct"):
        return True
    return leading and tok.lower_ in trim_words and tok.i != head.i


def _clause_table(doc: Any, config: ClauseConfig) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """Per spaCy token its clause head, and per head the clause's char span (trimmed hull)."""
    deps = frozenset(config.clause_deps)
    trim_words = frozenset(w.lower() for w in config.trim_words)
    heads = np.empty(len(doc), dtype=np.int64)
    for tok in doc:
        node = tok
        while not _is_clause_head(node, deps):
            node = node.head
        heads[tok.i] = node.i
    spans: dict[int, tuple[int, int]] = {}
    for head in np.unique(heads):
        head_tok = doc[int(head)]
        sent = head_tok.sent
        members = [doc[int(i)] for i in np.flatnonzero(heads == head) if sent.start <= i < sent.end]
        lo, hi = 0, len(members)
        while lo < hi and _droppable(members[lo], head_tok, trim_words, leading=True):
            lo += 1
        while hi > lo and _droppable(members[hi - 1], head_tok, trim_words, leading=False):
            hi -= 1
        kept = members[lo:hi] or [head_tok]
        spans[int(head)] = (kept[0].idx, kept[-1].idx + len(kept[-1].text))
    return heads, spans


@lru_cache(maxsize=512)
def _clause_index(
    text: str, config: ClauseConfig
) -> tuple[np.ndarray, dict[int, tuple[int, int]], np.ndarray, np.ndarray]:
    """Per text (cached): clause head per spaCy token, clause span per head, token char starts/ends."""
    doc = parse_problem(text, config)
    heads, spans = _clause_table(doc, config)
    starts = np.array([t.idx for t in doc], dtype=np.int64)
    ends = starts + np.array([len(t.text) for t in doc], dtype=np.int64)
    return heads, spans, starts, ends


def clause_spans(text: str, config: ClauseConfig = ClauseConfig()) -> list[tuple[int, int]]:
    """All clauses of ``text`` as char spans, sorted (useful for inspection and rendering)."""
    return sorted(set(_clause_index(text, config)[1].values()))


def merge_spans(
    spans: Sequence[tuple[int, int]], text: str | None = None, merge_whitespace_gaps: bool = True
) -> list[tuple[int, int]]:
    """Sort and merge overlapping char spans (and, with ``text``, spans separated only by whitespace)."""
    out: list[list[int]] = []
    for s, e in sorted((int(a), int(b)) for a, b in spans if b > a):
        if out and (
            s <= out[-1][1] or (merge_whitespace_gaps and text is not None and not text[out[-1][1] : s].strip())
        ):
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _expand_to_latex(span: tuple[int, int], math: Sequence[tuple[int, int]]) -> tuple[int, int]:
    s, e = span
    for ms, me in math:
        if ms < e and me > s:
            s, e = min(s, ms), max(e, me)
    return s, e


def _clauses_for_chars(text: str, char_spans: np.ndarray, config: ClauseConfig) -> list[tuple[tuple[int, int], str]]:
    """For each seed char span: (enclosing clause hull, source) — unmerged, same order."""
    heads, spans, starts, ends = _clause_index(text, config)
    math = latex_spans(text) if config.latex_atomic else []
    out: list[tuple[tuple[int, int], str]] = []
    for s, e in char_spans:
        hit = np.flatnonzero((starts < e) & (ends > s))
        if hit.size == 0:
            out.append((_expand_to_latex(trim_span(text, int(s), int(e)), math), "token"))
            continue
        clause = [spans[int(heads[i])] for i in hit]
        hull = (min(c[0] for c in clause), max(c[1] for c in clause))
        out.append((_expand_to_latex(hull, math), "clause"))
    return out


def expand_to_clauses(text: str, char_spans: Any, config: ClauseConfig = ClauseConfig()) -> list[tuple[int, int]]:
    """Seed char spans (e.g. high-IAF tokens) → sorted, merged char regions of their clauses.

    Each seed maps to the clause(s) of the spaCy tokens it overlaps (a seed over no spaCy
    token keeps its own whitespace-trimmed span); regions never cut a LaTeX formula.
    """
    seeds = as_spans(char_spans)
    hulls = [span for span, _ in _clauses_for_chars(text, seeds, config)]
    return merge_spans(hulls, text, config.merge_whitespace_gaps)


def _regions_from_seeds(
    problem_text: str,
    token_spans: np.ndarray,
    iaf: np.ndarray,
    seeds: np.ndarray,
    config: ClauseConfig,
) -> list[Region]:
    if seeds.size == 0:
        return []
    expanded = _clauses_for_chars(problem_text, token_spans[seeds], config)
    merged = merge_spans([span for span, _ in expanded], problem_text, config.merge_whitespace_gaps)
    regions: list[Region] = []
    for s, e in merged:
        members = [
            (int(seed), src) for seed, (span, src) in zip(seeds, expanded, strict=True) if s <= span[0] and span[1] <= e
        ]
        overlapping = (token_spans[:, 0] < e) & (token_spans[:, 1] > s) & (token_spans[:, 1] > token_spans[:, 0])
        source = "clause" if any(src == "clause" for _, src in members) else "token"
        regions.append(Region(int(s), int(e), float(iaf[overlapping].sum()), source, tuple(m for m, _ in members)))
    return regions


def problem_regions(
    problem_text: str,
    problem_token_char_spans: Any,
    iaf: Any,
    config: SignalConfig = SignalConfig(),
) -> list[Region]:
    """One CoT step's IAF over the problem tokens → clause-expanded regions of the problem text.

    ``problem_token_char_spans``: ``(n_problem, 2)`` char spans of the teacher's problem tokens
    relative to ``problem_text`` (``ProblemTokens.char_spans``); ``iaf``: ``(n_problem,)``
    (one row of ``iaf_matrix``).  High-IAF tokens are chosen by ``config.iaf``
    (:func:`high_iaf_tokens`) and expanded by ``config.clauses``.  Sorted by ``start_char``.
    """
    spans = as_spans(problem_token_char_spans)
    row = to_numpy(iaf, np.float64)
    if row.ndim != 1:
        raise ValueError("iaf must be one row (n_problem,); use problem_regions_per_segment for a matrix")
    seeds = high_iaf_tokens(row, problem_text, spans, config.iaf)
    return _regions_from_seeds(problem_text, spans, row, seeds, config.clauses)


def problem_regions_per_segment(
    problem_text: str,
    problem_token_char_spans: Any,
    iaf: Any,
    config: SignalConfig = SignalConfig(),
) -> list[list[Region]]:
    """:func:`problem_regions` for every row of an IAF matrix ``(n_segments, n_problem)`` (one parse)."""
    matrix = to_numpy(iaf, np.float64)
    if matrix.ndim != 2:
        raise ValueError("iaf must be (n_segments, n_problem)")
    return [problem_regions(problem_text, problem_token_char_spans, row, config) for row in matrix]
