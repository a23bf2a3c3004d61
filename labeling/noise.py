"""Suspected label noise: out-of-sample probabilities from k-fold cross-fitted heads → cleanlab.

For each machine-labelled problem, a small head (multinomial logistic regression on the frozen
MiniLM sentence embedding, :mod:`labeling.embeddings`) is fitted on the other k−1 folds and
predicts the held-out fold; :func:`cleanlab.filter.find_label_issues` then flags labels that the
out-of-sample probabilities contradict. Targets (one class per problem):

* ``C2``: the operation of the answer step (the last step's op) — the op that decides the answer;
* ``C6``: the answer type.

Pure on arrays (``embeddings`` (N, D), ``labels`` (N,) class strings); no DB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_CLASS = 3  # classes with fewer examples are left out (cannot be cross-fitted)


@dataclass(frozen=True)
class NoiseFlags:
    """Per task: indices of flagged examples (into the input order) and their self-confidence."""

    flagged: dict[str, dict[int, float]]  # task -> {index: p(given label) out of sample}


def c2_target(payload: Mapping[str, Any] | None) -> str | None:
    """The op of the last step of a C2 label payload (contract shape), or None."""
    steps = (payload or {}).get("steps") or []
    return str(steps[-1].get("op")) if steps and steps[-1].get("op") else None


def c6_target(payload: Mapping[str, Any] | None) -> str | None:
    value = (payload or {}).get("answer_type")
    return str(value) if value else None


def cross_fitted_probabilities(x: np.ndarray, y: np.ndarray, n_classes: int, folds: int = 5,
                               seed: int = 0) -> np.ndarray:
    """(N, n_classes) out-of-sample probabilities: each fold predicted by a head fitted without it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(y), n_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(x, y):
        head = LogisticRegression(max_iter=500, C=1.0)
        head.fit(x[train], y[train])
        probs[np.ix_(held, head.classes_)] = head.predict_proba(x[held])
    return probs


def find_noise(embeddings: np.ndarray, targets: Mapping[str, Sequence[str | None]], folds: int = 5,
               seed: int = 0) -> NoiseFlags:
    """Flag suspected label errors per task. ``targets[task][i]``: example i's class (None: no label)."""
    from cleanlab.filter import find_label_issues

    flagged: dict[str, dict[int, float]] = {}
    for task, raw in targets.items():
        counts = Counter(t for t in raw if t is not None)
        classes = sorted(c for c, n in counts.items() if n >= max(MIN_CLASS, folds))
        index = [i for i, t in enumerate(raw) if t in classes]
        flagged[task] = {}
        if len(classes) < 2 or len(index) < 2 * folds:
            continue
        code = {c: k for k, c in enumerate(classes)}
        y = np.array([code[raw[i]] for i in index])
        probs = cross_fitted_probabilities(embeddings[index], y, len(classes), folds, seed)
        # n_jobs=1: cleanlab's default forks a multiprocessing pool, which deadlocks in a process
        # that already runs torch / webhook threads (seen: a round start hung in Pool.terminate).
        issues = find_label_issues(labels=y, pred_probs=probs, filter_by="prune_by_noise_rate", n_jobs=1)
        for j in np.flatnonzero(issues):
            flagged[task][index[j]] = float(probs[j, y[j]])
    return NoiseFlags(flagged)
