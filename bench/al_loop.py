"""Active-learning loop with the real C2 specialist: uncertainty/composite selection vs random.

The simulated review loop of issue 14. The learner is the product's C2 specialist (``training``:
``C2Task`` — MAX_STEPS slot queries decoded over the frozen MiniLM token states, ``train_task``
with early stopping and temperature calibration on a dev split); the frozen-encoder variant, so
every problem is encoded once (cached). "Reviewers" answer each selected problem with its
held-back validated reference label: the C2 ops of the reference program that reproduces the
gold answer (``app.execution.validate``), the same ops ``app.labels.derive`` puts in C2 labels.

Selection is the product's (``labeling.selection``): per-slot op distributions of the current
model on the pool → composite uncertainty (entropy / margin / least confidence, max over the
predicted steps) → priority-weighted greedy k-center on MiniLM embeddings with near-duplicates
skipped; ``random`` uses the same code with the random strategy.

Protocol: validated problems are split by problem hash into pool / dev (early stopping and
calibration) / eval (measurement only). Target: ``--target-fraction`` × the eval C2 macro-F1 of
the specialist trained on the whole pool. Each strategy starts from the same random seed set,
labels ``--batch`` problems per round and retrains, until eval macro-F1 ≥ target (or the budget
ends; then the budget counts as its labels — a lower bound on the ratio is reported honestly as
``reached: false``). ``efficiency_ratio`` = mean random labels-to-target / mean AL
labels-to-target over ``--seeds`` seeds. Prints one JSON line.

    nice -n 10 python bench/al_loop.py [--pool 1200] [--seeds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [REPO.parent / "shared" / "data" / "gsm8k_train.jsonl", REPO / "tests" / "fixtures" / "gsm8k_sample.jsonl"]


@dataclass
class Data:
    texts: list[str]
    ops: list[list[str]]  # C2 ops per step of the validated reference program
    pool: list[int]
    dev: list[int]
    eval: list[int]


def _bucket(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def load(path: Path, limit: int, dev_fraction: float, eval_fraction: float) -> Data:
    """Validated GSM8K problems (reference program reproduces gold) with their C2 ops, split by hash."""
    from app.execution.answers import split_gsm8k_solution
    from app.execution.validate import validate_solution
    from app.inference.proposals import MAX_STEPS

    texts: list[str] = []
    ops: list[list[str]] = []
    with path.open() as handle:
        for line in handle:
            if len(texts) >= limit:
                break
            record = json.loads(line)
            cot, gold = split_gsm8k_solution(record["answer"])
            result = validate_solution(record["question"], cot, gold, "gsm8k")
            steps = result.program.get("steps") or []
            if result.correct and 0 < len(steps) <= MAX_STEPS:
                texts.append(record["question"])
                ops.append([str(s["op"]) for s in steps])
    buckets = [_bucket(t) for t in texts]
    ev = [i for i, b in enumerate(buckets) if b < eval_fraction]
    dev = [i for i, b in enumerate(buckets) if eval_fraction <= b < eval_fraction + dev_fraction]
    pool = [i for i, b in enumerate(buckets) if b >= eval_fraction + dev_fraction]
    return Data(texts, ops, pool, dev, ev)


class Learner:
    """The C2 specialist on cached frozen-encoder states, with a fixed op vocabulary."""

    def __init__(self, data: Data, config: Any):
        from training.encoder import encode_cached, load_backbone
        from training.examples import NONE_OP, ProblemData
        from training.registry import cache_dir

        self.data = data
        self.config = config
        backbone = load_backbone(None, "cpu")
        self.encoded = encode_cached(backbone, data.texts, cache_dir())
        self.records = [ProblemData(i, t, {"C2": {"steps": [{"step": k + 1, "op": op} for k, op in enumerate(o)]}})
                        for i, (t, o) in enumerate(zip(data.texts, data.ops, strict=True))]
        self.vocab = sorted({op for o in data.ops for op in o}) + [NONE_OP]
        self.none = len(self.vocab) - 1
        means = np.stack([e.states[e.is_text].astype(np.float32).mean(axis=0) for e in self.encoded])
        self.embeddings = means / np.linalg.norm(means, axis=1, keepdims=True)

    def corpus(self, indices: Sequence[int]) -> Any:
        from training.tasks import Corpus

        return Corpus([self.records[i] for i in indices], [self.encoded[i] for i in indices])

    def fit(self, labelled: Sequence[int]) -> Any:
        from training.c2_classifier import C2Task
        from training.loop import train_task

        vocab = self.vocab

        class FixedVocabC2(C2Task):
            def label_maps(self, train: Any) -> dict[str, Any]:
                return {"ops": vocab}

        self.task = FixedVocabC2()
        return train_task(self.task, self.corpus(labelled), self.corpus(self.data.dev), self.config)

    def slot_probs(self, result: Any, indices: Sequence[int]) -> np.ndarray:
        """(N, K, n_ops) calibrated op distributions per slot."""
        import torch

        from training.c2_classifier import op_probs

        corpus = self.corpus(indices)
        out = []
        with torch.no_grad():
            for start in range(0, len(indices), 64):
                states, mask = corpus.states(range(start, min(start + 64, len(indices))))
                out.append(op_probs(result.head, states, mask, result.temperatures.get("op", 1.0)))
        return np.concatenate(out)

    def macro_f1(self, result: Any) -> float:
        """Eval C2 macro-F1 over step slots (gold ops and NONE past the program)."""
        from training.calibration import classification_metrics

        probs = self.slot_probs(result, self.data.eval)
        index = {op: k for k, op in enumerate(self.vocab)}
        y = np.full((len(self.data.eval), probs.shape[1]), self.none)
        for row, i in enumerate(self.data.eval):
            y[row, : len(self.data.ops[i])] = [index[op] for op in self.data.ops[i]]
        return float(classification_metrics(probs.argmax(-1).ravel(), y.ravel(), len(self.vocab))["macro_f1"])


def candidates_from(learner: Learner, probs: np.ndarray, indices: Sequence[int]) -> list[Any]:
    """One selection candidate per pool problem: the op distributions of its predicted steps."""
    from labeling.selection import Candidate

    out = []
    for row, i in enumerate(indices):
        predicted = probs[row].argmax(-1)
        n = int(np.argmax(predicted == learner.none)) if (predicted == learner.none).any() else probs.shape[1]
        slots = probs[row, : min(probs.shape[1], n + 1)]  # the predicted steps and the first NONE slot
        out.append(Candidate(problem_id=i, text=learner.data.texts[i], decisions=tuple(slots)))
    return out


def run(learner: Learner, strategy: str, seed: int, seed_size: int, batch: int, budget: int,
        target: float) -> dict[str, Any]:
    from labeling.selection import select_batch

    rng = np.random.default_rng(seed)
    pool = list(learner.data.pool)
    labelled = [int(i) for i in rng.choice(pool, size=seed_size, replace=False)]
    curve: list[tuple[int, float]] = []
    while True:
        result = learner.fit(labelled)
        f1 = learner.macro_f1(result)
        curve.append((len(labelled), round(f1, 4)))
        if f1 >= target or len(labelled) >= budget:
            return {"labels": len(labelled), "reached": f1 >= target, "curve": curve}
        rest = [i for i in pool if i not in set(labelled)]
        probs = learner.slot_probs(result, rest)
        candidates = candidates_from(learner, probs, rest)
        chosen = select_batch(candidates, min(batch, budget - len(labelled)), strategy, seed=seed,
                              embeddings=learner.embeddings[rest])
        labelled += [s.problem_id for s in chosen]  # the reviewer answers with the held-back label


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=next((p for p in DEFAULT_DATA if p.exists()), DEFAULT_DATA[-1]))
    parser.add_argument("--pool", type=int, default=1200, help="validated problems to load (pool + dev + eval)")
    parser.add_argument("--strategy", default="composite")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-size", type=int, default=40)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--budget", type=int, default=520)
    parser.add_argument("--target-fraction", type=float, default=0.95)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    from training.loop import TrainConfig

    started = time.perf_counter()
    data = load(args.data, args.pool, 0.1, 0.2)
    config = TrainConfig(epochs=args.epochs, batch_size=32, patience=3, width=64, layers=1)
    learner = Learner(data, config)
    full = learner.macro_f1(learner.fit(data.pool))
    target = round(args.target_fraction * full, 4)
    runs: dict[str, list[dict[str, Any]]] = {args.strategy: [], "random": []}
    for seed in range(args.seeds):
        for strategy in runs:
            runs[strategy].append(run(learner, strategy, seed, args.seed_size, args.batch, args.budget, target))
    mean = {s: float(np.mean([r["labels"] for r in rs])) for s, rs in runs.items()}
    out = {
        "bench": "al_loop",
        "learner": "C2 specialist (frozen MiniLM token states, slot-query head, train_task)",
        "task": "C2 op per step slot; eval macro-F1",
        "strategy": args.strategy,
        "pool": len(data.pool), "dev": len(data.dev), "eval": len(data.eval),
        "full_pool_macro_f1": round(full, 4),
        "target_macro_f1": target,
        "seeds": args.seeds, "seed_size": args.seed_size, "batch": args.batch, "budget": args.budget,
        "labels_to_target": mean[args.strategy],
        "random_labels_to_target": mean["random"],
        "efficiency_ratio": round(mean["random"] / mean[args.strategy], 3),
        "per_seed": {s: [{"labels": r["labels"], "reached": r["reached"]} for r in rs] for s, rs in runs.items()},
        "curves": {s: [r["curve"] for r in rs] for s, rs in runs.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
