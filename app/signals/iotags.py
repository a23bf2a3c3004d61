"""IO tags on tokens ↔ char regions (design §2.5: IO, not BIO).

Tags are an int8 array over the tokens of one tokenization (any tokenizer):
``1`` = I (inside a region), ``0`` = O.  A contiguous run of I tokens is one region.
Token positions come from an offset array ``(n_tokens, 2)`` (see ``alignment``); regions
are char spans ``(k, 2)`` into the same text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.signals.alignment import trim_span
from app.signals.arrays import as_offsets, as_spans

__all__ = ["TAG_O", "TAG_I", "io_tags_from_regions", "regions_from_io_tags"]

TAG_O: int = 0
TAG_I: int = 1


def io_tags_from_regions(regions: Any, offsets: Any) -> np.ndarray:
    """Char regions ``(k, 2)`` → tags ``(n_tokens,)`` int8: I for every non-empty token whose
    char range overlaps a region by at least one char, O otherwise (special tokens are O)."""
    off = as_offsets(offsets)
    reg = as_spans(regions)
    n_chars = int(max(off[:, 1].max(initial=0), reg[:, 1].max(initial=0)))
    depth = np.zeros(n_chars + 1, dtype=np.int64)
    np.add.at(depth, reg[:, 0], 1)
    np.add.at(depth, reg[:, 1], -1)
    covered = np.concatenate(([0], np.cumsum(np.cumsum(depth)[:n_chars] > 0)))  # covered chars before c
    hits = covered[off[:, 1]] - covered[off[:, 0]]
    return ((hits > 0) & (off[:, 1] > off[:, 0])).astype(np.int8)


def regions_from_io_tags(tags: Any, offsets: Any, text: str | None = None) -> np.ndarray:
    """Tags ``(n_tokens,)`` → char regions ``(k, 2)``: one per maximal run of I tokens, from the
    first char to the last char of its non-empty tokens (whitespace-trimmed when ``text`` is
    given; runs without characters are dropped).  Runs whose chars overlap or touch (byte
    pieces of one character split across runs) are merged, so the result is sorted and
    strictly separated."""
    off = as_offsets(offsets)
    t = np.asarray(tags).astype(bool)
    if t.shape != (off.shape[0],):
        raise ValueError(f"tags {t.shape} do not match {off.shape[0]} tokens")
    edges = np.flatnonzero(np.diff(np.concatenate(([0], t.astype(np.int8), [0]))))
    starts = edges[0::2]
    if starts.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    nonempty = off[:, 1] > off[:, 0]
    run_of = np.cumsum(np.isin(np.arange(off.shape[0]), starts)) - 1  # run index of each token (valid when tagged)
    use = t & nonempty
    big = np.iinfo(np.int64).max
    first = np.full(starts.size, big, dtype=np.int64)
    last = np.full(starts.size, -1, dtype=np.int64)
    np.minimum.at(first, run_of[use], off[use, 0])
    np.maximum.at(last, run_of[use], off[use, 1])
    out = np.stack([first, last], axis=1)[last >= 0]
    if text is not None:
        out = np.array([trim_span(text, int(s), int(e)) for s, e in out], dtype=np.int64).reshape(-1, 2)
        out = out[out[:, 1] > out[:, 0]]
    return _merge_touching(out)


def _merge_touching(spans: np.ndarray) -> np.ndarray:
    """Sort ``(k, 2)`` char spans and merge those that overlap or touch (vectorised)."""
    if spans.shape[0] < 2:
        return spans
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    reach = np.maximum.accumulate(spans[:, 1])
    new_group = np.r_[True, spans[1:, 0] > reach[:-1]]
    group = np.cumsum(new_group) - 1
    starts = spans[new_group, 0]
    ends = np.maximum.reduceat(spans[:, 1], np.flatnonzero(new_group))
    return np.stack([starts, ends], axis=1)[: group[-1] + 1]
