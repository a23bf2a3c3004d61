"""Benchmark: is candidate selection limited by the ranker or by its features? (GSM8K DEV only.)

Reads the searched candidates that ``python -m training.selector`` cached (under
``MYCELIUM_HOME/cache/selector/<specialists' version>/``; run the selector step first) and
compares, on the same DEV problems and the same gold-blind features (no verifier logits):

* the vote (the search's own order) and correct-in-beam (the ceiling of any ranker);
* the shipped listwise linear selector: 5-fold out-of-fold on DEV, fitted on TRAIN candidates,
  and fitted on TRAIN plus the other DEV folds;
* a non-linear pointwise ranker (scikit-learn's ``HistGradientBoostingClassifier``) over the
  features, each group's gap to the problem's best value and its within-problem rank, fitted
  on TRAIN (and on TRAIN plus the other DEV folds).

Test is never read. Prints one JSON line: every figure is top-1 accuracy on the n DEV problems.

Usage::

    MYCELIUM_HOME=/work/bench_home .venv/bin/python bench/selector_models.py [--version C1v1.…]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Problems = Sequence[tuple[np.ndarray, Sequence[bool]]]
FOLDS = 5


def cached_rows(directory: Path, split: str, tag: str) -> list:
    """The cached (text, RankingInputs, labels) rows of one split, in problem-id order."""
    files = sorted(directory.glob(f"{split}_{tag}_*.pkl"), key=lambda p: int(p.stem.rsplit("_", 2)[-2]))
    if not files:
        raise SystemExit(f"no cached {split} candidates under {directory} (run `python -m training.selector` first)")
    return [row for file in files for row in pickle.loads(file.read_bytes())]


def within_problem(x: np.ndarray) -> np.ndarray:
    """(G, F) features → (G, 3F): the features, their gap to the problem's maximum, their rank."""
    if len(x) == 0:
        return np.zeros((0, 3 * x.shape[1]))
    return np.hstack([x, x - x.max(axis=0, keepdims=True), np.argsort(np.argsort(-x, axis=0), axis=0)])


def boosted_top1(train: Problems, test: Problems, seed: int = 0) -> float:
    """Top-1 accuracy on ``test`` of a gradient-boosted pointwise ranker fitted on ``train``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    used = [(x, y) for x, y in train if len(y)]
    model = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=400, max_leaf_nodes=15,
                                           l2_regularization=1.0, random_state=seed)
    model.fit(np.vstack([within_problem(x) for x, _ in used]), np.concatenate([np.asarray(y, int) for _, y in used]))
    hits = sum(bool(y[int(np.argmax(model.predict_proba(within_problem(x))[:, 1]))]) for x, y in test if len(y))
    return hits / max(1, len(test))


def out_of_fold(dev: Problems, extra: Problems, fit_and_score: Callable[[Problems, Problems], float]) -> float:
    """Top-1 over DEV, each fold scored by a ranker fitted on ``extra`` plus the other folds."""
    order = np.random.default_rng(0).permutation(len(dev))
    hits = 0.0
    for k in range(FOLDS):
        held = set(order[k::FOLDS].tolist())
        inside = [p for i, p in enumerate(dev) if i not in held]
        part = [p for i, p in enumerate(dev) if i in held]
        hits += fit_and_score(list(extra) + inside, part) * len(part)
    return hits / max(1, len(dev))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="Specialists' model_version (default: the newest cached).")
    parser.add_argument("--tag", default="gsm8k_t0.85_k3_p100", help="Search-setting tag of the cached chunks.")
    parser.add_argument("--l2", type=float, default=0.1, help="Ridge penalty of the linear selector.")
    args = parser.parse_args()

    from app.config import get_settings
    from app.inference.selector import fit_selector, rank_accuracy
    from training.selector import feature_rows

    root = Path(get_settings().mycelium_home) / "cache" / "selector"
    if not root.is_dir():
        raise SystemExit(f"no selector cache under {root} (set MYCELIUM_HOME; run `python -m training.selector`)")
    version = args.version or max(root.iterdir(), key=lambda p: p.stat().st_mtime).name
    started = time.perf_counter()
    dev = feature_rows(cached_rows(root / version, "dev", args.tag))
    train = feature_rows(cached_rows(root / version, "train", args.tag))

    def linear(fit_on: Problems, test: Problems) -> float:
        return rank_accuracy(fit_selector(fit_on, l2=args.l2), test)

    figures = {
        "vote": rank_accuracy(None, dev),
        "correct_in_beam": sum(any(y) for _, y in dev) / max(1, len(dev)),
        "linear_dev_oof": out_of_fold(dev, [], linear),
        "linear_train": linear(train, dev),
        "linear_train_plus_dev_oof": out_of_fold(dev, train, linear),
        "boosted_train": boosted_top1(train, dev),
        "boosted_train_plus_dev_oof": out_of_fold(dev, train, boosted_top1),
    }
    print(json.dumps({"bench": "selector_models", "specialists": version, "n_dev": len(dev), "n_train": len(train),
                      **{k: round(v, 4) for k, v in figures.items()},
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
