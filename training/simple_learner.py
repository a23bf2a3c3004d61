"""A simple stand-in learner for active-learning experiments before the specialists exist.

Hashed bag-of-words features (number-blind word and LaTeX-command unigrams + bigrams,
L2-normalised, sparse) and an L2-regularised multinomial logistic regression fitted with
L-BFGS. Deterministic, CPU-only, a fraction of a second per fit on a few thousand problems;
its calibrated ``predict_proba`` is what uncertainty sampling needs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse
from scipy.special import logsumexp, softmax

DEFAULT_DIM = 2**15
_TOKEN = re.compile(r"\\[a-zA-Z]+|[a-zA-Z]+|\d+(?:\.\d+)?|[^\s\w]")


def tokens(text: str) -> list[str]:
    """Lower-cased words, LaTeX commands and symbols; every number becomes ``<num>``."""
    return ["<num>" if t[0].isdigit() else t.lower() for t in _TOKEN.findall(text)]


def _bucket(feature: str, dim: int) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little") % dim


def featurize(texts: Sequence[str], dim: int = DEFAULT_DIM) -> sparse.csr_matrix:
    """Hashed unigram + bigram counts, L2-normalised rows: shape (len(texts), dim)."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for row, text in enumerate(texts):
        toks = tokens(text)
        counts: dict[int, float] = {}
        for feature in [*toks, *(f"{a} {b}" for a, b in zip(toks, toks[1:]))]:
            index = _bucket(feature, dim)
            counts[index] = counts.get(index, 0.0) + 1.0
        norm = np.sqrt(sum(v * v for v in counts.values())) or 1.0
        for index, value in counts.items():
            rows.append(row)
            cols.append(index)
            vals.append(value / norm)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), dim), dtype=np.float64)


@dataclass
class SoftmaxRegression:
    """Multinomial logistic regression with an L2 penalty ``l2 * ||W||² / 2`` (bias unpenalised)."""

    n_classes: int
    l2: float = 1e-4
    max_iter: int = 100
    weights: np.ndarray | None = field(default=None, repr=False)  # (dim + 1, n_classes), last row = bias

    def _loss_and_grad(self, flat: np.ndarray, x: sparse.csr_matrix, y: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(x.shape[1] + 1, self.n_classes)
        logits = x @ w[:-1] + w[-1]
        log_norm = logsumexp(logits, axis=1)
        n = x.shape[0]
        loss = float((log_norm - logits[np.arange(n), y]).mean() + 0.5 * self.l2 * np.sum(w[:-1] ** 2))
        probs = np.exp(logits - log_norm[:, None])
        probs[np.arange(n), y] -= 1.0
        probs /= n
        grad = np.empty_like(w)
        grad[:-1] = np.asarray(x.T @ probs) + self.l2 * w[:-1]
        grad[-1] = probs.sum(axis=0)
        return loss, grad.ravel()

    def fit(self, x: sparse.csr_matrix, y: Sequence[int] | np.ndarray, warm_start: bool = True) -> SoftmaxRegression:
        """Fit on rows ``x`` with integer labels ``y`` in ``[0, n_classes)``."""
        labels = np.asarray(y, dtype=int)
        if labels.size == 0:
            raise ValueError("cannot fit on zero labelled examples")
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got {labels.min()}..{labels.max()}")
        shape = (x.shape[1] + 1, self.n_classes)
        start = (
            self.weights
            if (warm_start and self.weights is not None and self.weights.shape == shape)
            else np.zeros(shape)
        )
        result = optimize.minimize(
            self._loss_and_grad,
            start.ravel(),
            args=(x, labels),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.weights = result.x.reshape(shape)
        return self

    def predict_proba(self, x: sparse.csr_matrix) -> np.ndarray:
        """Class probabilities, shape (rows, n_classes)."""
        if self.weights is None:
            return np.full((x.shape[0], self.n_classes), 1.0 / self.n_classes)
        return softmax(x @ self.weights[:-1] + self.weights[-1], axis=1)

    def predict(self, x: sparse.csr_matrix) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)


def accuracy(model: SoftmaxRegression, x: sparse.csr_matrix, y: Sequence[int] | np.ndarray) -> float:
    """Fraction of rows predicted right."""
    truth = np.asarray(y, dtype=int)
    return float((model.predict(x) == truth).mean()) if truth.size else float("nan")
