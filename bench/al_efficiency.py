"""Active-learning efficiency: uncertainty-based vs random selection on the same budget.

Task: C6's answer type (integer, fraction, radical, expression, interval, tuple, …) predicted
from the problem text only. Reference labels come from the gold answer (``\\boxed{…}`` of
MATH's reference solution), and a *simulated annotator* answers every selected problem with
its reference label — the stand-in for a reviewer in Label Studio.

Learner: ``training.simple_learner`` (hashed bag of words + multinomial logistic regression),
because the specialists do not exist yet. Selection uses the product's own code
(``labeling.selection``: the uncertainty measure, then diverse batches without near-duplicates).

Protocol: problems are split (by problem hash) into a pool and a held-out evaluation set. The
target is ``--target-fraction`` of the accuracy of the learner trained on the whole pool.
Starting from the same random seed set, each strategy labels ``--batch`` problems per step
until the held-out accuracy reaches the target; ``labels_to_target`` is the mean over
``--seeds`` runs. Prints one JSON line.

    python bench/al_efficiency.py [--data ../shared/data/math_train.jsonl] [--strategy entropy]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.execution.answers import extract_boxed  # noqa: E402
from labeling.selection import least_confidence, margin_uncertainty, normalized_entropy, select_diverse  # noqa: E402
from training.simple_learner import SoftmaxRegression, accuracy, featurize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [REPO.parent / "shared" / "data" / "math_train.jsonl", REPO / "tests" / "fixtures" / "math_sample.jsonl"]
UNCERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": normalized_entropy,
    "margin": margin_uncertainty,
    "least_confidence": least_confidence,
}


# --------------------------------------------------------------------------- reference labels


def _clean(answer: str) -> str:
    text = answer.strip().strip("$").strip()
    text = re.sub(r"\\(?:left|right|displaystyle|!|,|;|quad|mbox)", "", text)
    text = re.sub(r"\^\{?\\circ\}?|\\%|%|\\\$|\\text\{\s*(?:cm|m|inches|units|degrees|cents|dollars)\s*\}", "", text)
    text = text.replace(" ", "")
    if not re.search(r"[\[\]()]", text):
        text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators: 306,956.63
    return text


def answer_type(answer: str) -> str:
    """The answer type of a gold answer string (one of ``labeling.config_xml.ANSWER_TYPES``)."""
    text = _clean(answer)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+|-?\d+", text):
        return "integer"
    if re.fullmatch(r"-?\d*\.\d+", text):
        return "decimal"
    if (
        "\\infty" in text
        or "\\cup" in text
        or re.fullmatch(r"[\[(].*,.*[\])]", text)
        and text[0] + text[-1] in {"[)", "(]", "[]"}
    ):
        return "interval"
    if re.fullmatch(r"\(.*,.*\)", text) or "\\begin{pmatrix}" in text:
        return "tuple"
    if "," in text:
        return "set"
    if "\\sqrt" in text:
        return "radical"
    if re.fullmatch(r"-?\\[dt]?frac\{-?\d+\}\{\d+\}|-?\d+/\d+", text):
        return "fraction"
    if re.fullmatch(r"\\text\{[^{}]*\}|[A-Za-z]{3,}", text):
        return "text"
    return "expression"


@dataclass(frozen=True)
class Dataset:
    texts: list[str]
    labels: np.ndarray  # class index per problem
    classes: list[str]
    pool: np.ndarray  # indices
    held_out: np.ndarray  # indices


def load(path: Path, held_out_fraction: float = 0.2) -> Dataset:
    """MATH records → (problem text, answer type); split by problem hash."""
    texts: list[str] = []
    types: list[str] = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        gold = extract_boxed(record["solution"])
        if gold is None:
            continue
        texts.append(record["problem"])
        types.append(answer_type(gold))
    classes = sorted(set(types))
    labels = np.array([classes.index(t) for t in types])
    in_held_out = np.array(
        [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 16**8 < held_out_fraction for t in texts]
    )
    return Dataset(texts, labels, classes, np.flatnonzero(~in_held_out), np.flatnonzero(in_held_out))


# --------------------------------------------------------------------------- simulation


def simulated_annotator(labels: np.ndarray) -> Callable[[Sequence[int]], np.ndarray]:
    """Answers a batch of problems with their reference labels."""
    return lambda indices: labels[np.asarray(indices, dtype=int)]


def run_strategy(
    data: Dataset,
    features,  # noqa: ANN001 — scipy sparse matrix
    strategy: str,
    seed: int,
    target: float,
    seed_size: int,
    batch: int,
    budget: int,
) -> tuple[int, bool, list[tuple[int, float]]]:
    """Label until held-out accuracy ≥ target; return (labels used, reached, curve)."""
    rng = np.random.default_rng(seed)
    annotate = simulated_annotator(data.labels)
    labelled = list(rng.choice(data.pool, size=seed_size, replace=False))
    answers = list(annotate(labelled))
    unlabelled = np.setdiff1d(data.pool, labelled)
    model = SoftmaxRegression(n_classes=len(data.classes))
    x_eval, y_eval = features[data.held_out], data.labels[data.held_out]
    curve: list[tuple[int, float]] = []
    while True:
        model.fit(features[labelled], answers)
        score = accuracy(model, x_eval, y_eval)
        curve.append((len(labelled), round(score, 4)))
        if score >= target:
            return len(labelled), True, curve
        if len(labelled) >= budget or unlabelled.size == 0:
            return len(labelled), False, curve
        size = min(batch, budget - len(labelled), unlabelled.size)
        if strategy == "random":
            chosen = list(rng.choice(unlabelled, size=size, replace=False))
        else:
            priorities = UNCERTAINTY[strategy](model.predict_proba(features[unlabelled]))
            picked = select_diverse(priorities, [data.texts[i] for i in unlabelled], size, tie_break=unlabelled)
            chosen = [int(unlabelled[i]) for i in picked.chosen]
        labelled.extend(chosen)
        answers.extend(annotate(chosen))
        unlabelled = np.setdiff1d(unlabelled, chosen)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=next((p for p in DEFAULT_DATA if p.exists()), DEFAULT_DATA[-1]))
    parser.add_argument("--strategy", choices=sorted(UNCERTAINTY), default="entropy")
    parser.add_argument("--target-fraction", type=float, default=0.95)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=3000)
    args = parser.parse_args(argv)

    started = time.monotonic()
    data = load(args.data)
    features = featurize(data.texts)
    full = SoftmaxRegression(n_classes=len(data.classes)).fit(features[data.pool], data.labels[data.pool])
    full_accuracy = accuracy(full, features[data.held_out], data.labels[data.held_out])
    target = args.target_fraction * full_accuracy
    budget = min(args.budget, data.pool.size)
    results: dict[str, list[tuple[int, bool]]] = {args.strategy: [], "random": []}
    for seed in range(args.seeds):
        for strategy in results:
            used, reached, _ = run_strategy(data, features, strategy, seed, target, args.seed_size, args.batch, budget)
            results[strategy].append((used, reached))
    a = float(np.mean([used for used, _ in results[args.strategy]]))
    b = float(np.mean([used for used, _ in results["random"]]))
    majority = Counter(data.labels[data.held_out].tolist()).most_common(1)[0][1] / data.held_out.size
    print(
        json.dumps(
            {
                "strategy": args.strategy,
                "labels_to_target": round(a, 1),
                "random_labels_to_target": round(b, 1),
                "efficiency_ratio": round(b / a, 3),
                "learner": "hashed bag-of-words + multinomial logistic regression (training.simple_learner)",
                "task": "C6 answer type from problem text",
                "data": str(args.data),
                "classes": data.classes,
                "pool": int(data.pool.size),
                "held_out": int(data.held_out.size),
                "full_pool_accuracy": round(full_accuracy, 4),
                "majority_accuracy": round(majority, 4),
                "target_accuracy": round(target, 4),
                "reached_target": {k: [r for _, r in v] for k, v in results.items()},
                "seeds": args.seeds,
                "batch": args.batch,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
