"""Temperature scaling and calibration metrics. Pure numpy.

``logits`` are (N, K) arrays (a binary head's logit z is passed as the two columns ``[0, z]``,
so ``softmax([0, z] / T)`` is ``sigmoid(z / T)``); ``y`` is (N,) int in ``[0, K)``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, softmax


def binary_logits(z: np.ndarray) -> np.ndarray:
    """(N,) logits of a binary head → (N, 2) logits ``[0, z]``."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    return np.stack([np.zeros_like(z), z], axis=1)


def _check(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, K) and y (N,), got {logits.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise ValueError("labels out of range")
    return logits, y


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    logits, y = _check(logits, y)
    if len(y) == 0:
        return 0.0
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on held-out (dev) data.

    Searched over log T (bounded scalar minimisation); 1.0 when there is no data.
    """
    logits, y = _check(logits, y)
    if len(y) == 0:
        return 1.0
    result = optimize.minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, ``bins`` equal-width bins on [0, 1].

    ``probs`` (N, K) rows summing to 1. Σ_b (n_b / N) · |accuracy_b − confidence_b|.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


def ece_floor(probs: np.ndarray, bins: int = 15, draws: int = 20, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these probabilities would still show at this N.

    Labels are drawn from ``probs`` itself (``draws`` times, seeded) and the ECE averaged: the
    binning noise floor, ~0.05 at N ≈ 700 — below it no calibration can go on a sample this size.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs, axis=1)
    out = []
    for _ in range(draws):
        u = rng.random((len(probs), 1)) * cumulative[:, -1:]
        out.append(ece(probs, (u > cumulative).sum(axis=1), bins))
    return float(np.mean(out))


def calibrate(logits: np.ndarray, y: np.ndarray, bins: int = 15, seed: int = 0) -> dict[str, float]:
    """Fit T on all of ``(logits, y)`` (dev); report ECE before (T = 1) and after.

    ``ece_after`` uses the T fitted on the same dev data (one parameter: little room to overfit;
    test is never touched). ``ece_after_crossfit`` is out-of-sample — T fitted on one half of dev,
    ECE measured on the other, size-weighted — and noisier (half-size bins). ``ece_floor`` is the
    ECE a perfectly calibrated model would show at this N (:func:`ece_floor`).
    """
    logits, y = _check(logits, y)
    temperature = fit_temperature(logits, y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    folds = [order[: len(y) // 2], order[len(y) // 2:]]
    crossed = 0.0
    for a, b in ((0, 1), (1, 0)):
        if len(folds[a]) == 0 or len(folds[b]) == 0:
            continue
        t = fit_temperature(logits[folds[a]], y[folds[a]])
        crossed += len(folds[b]) / len(y) * ece(softmax(logits[folds[b]] / t, axis=1), y[folds[b]], bins)
    calibrated = softmax(logits / temperature, axis=1)
    return {
        "temperature": temperature,
        "ece_before": ece(softmax(logits, axis=1), y, bins),
        "ece_after": ece(calibrated, y, bins),
        "ece_after_crossfit": crossed,
        "ece_floor": ece_floor(calibrated, bins, seed=seed),
        "nll_before": nll(logits, y),
        "nll_after": nll(logits, y, temperature),
        "n": int(len(y)),
    }


def classification_metrics(pred: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy and macro-F1 (over the classes present in ``y`` or ``pred``) of integer predictions."""
    pred = np.asarray(pred, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    classes = np.union1d(np.unique(y), np.unique(pred))
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(pred == y)), "macro_f1": float(np.mean(f1s))}


def majority_baseline(train_y: np.ndarray, dev_y: np.ndarray) -> dict[str, float]:
    """Metrics on dev of always predicting the most frequent train class."""
    train_y = np.asarray(train_y, dtype=np.int64)
    if len(train_y) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    majority = int(np.bincount(train_y).argmax())
    return classification_metrics(np.full(len(dev_y), majority), dev_y)
