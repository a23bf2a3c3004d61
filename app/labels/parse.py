"""Clause tables for many problem texts at once: one batched spaCy pass (``nlp.pipe``).

:func:`app.signals.clauses.parse_problem` parses one text per call, which is right for a single
trace but too slow for a whole dataset; here the same pipeline parses every text in batches with
the components clause expansion does not read (lemmatizer, NER) switched off, and each Doc is
turned into a :class:`~app.labels.derive.ClauseTable` at once (Docs are not kept). The tables are
exactly those :mod:`app.signals.clauses` builds (same masking, same clause rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.labels.derive import ClauseTable
from app.signals.clauses import _clause_table, latex_spans, load_spacy, mask_latex
from app.signals.config import ClauseConfig

__all__ = ["clause_tables"]

_UNUSED_PIPES = ("lemmatizer", "ner")


def clause_tables(
    texts: Sequence[str],
    config: ClauseConfig = ClauseConfig(),
    batch_size: int = 256,
    n_process: int = 1,
) -> list[ClauseTable]:
    """One :class:`ClauseTable` per text, in order.

    ``n_process`` > 1 uses spaCy's multiprocessing (only worth it on idle cores).
    """
    if not texts:
        return []
    nlp = load_spacy(config.spacy_models)
    maths = [tuple(latex_spans(text)) if config.latex_atomic else () for text in texts]
    masked = (mask_latex(text, math) if math else text for text, math in zip(texts, maths, strict=True))
    disabled = [name for name in _UNUSED_PIPES if name in nlp.pipe_names]
    tables: list[ClauseTable] = []
    with nlp.select_pipes(disable=disabled):
        for doc, math in zip(nlp.pipe(masked, batch_size=batch_size, n_process=n_process), maths, strict=True):
            heads, spans = _clause_table(doc, config)
            starts = np.fromiter((t.idx for t in doc), dtype=np.int64, count=len(doc))
            ends = starts + np.fromiter((len(t.text) for t in doc), dtype=np.int64, count=len(doc))
            tables.append(ClauseTable(heads, spans, starts, ends, math))
    return tables
