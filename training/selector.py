"""Fit the candidate selector (``app.inference.selector``) for one set of trained specialists.

Database shell: runs the gold-blind search (plain vote, no selector) over TRAIN-split problems,
labels every answer group with gold (training data: the train split is what the specialists
were trained on; gold labels candidates here, never at inference), fits the listwise selector
for each ridge penalty of a small grid, and picks the penalty by top-1 accuracy on the DEV
split (never test). The fitted weights are saved with their sha256 under
``MYCELIUM_HOME/models/selector/<specialists' model_version>/selector.json``; inference loads
them with the models (``app.inference.cli.with_selector``) and names them in ``model_version``.

Usage::

    DATABASE_URL=… MYCELIUM_HOME=… nice -n 5 .venv/bin/python -m training.selector \\
        [--model-version C1v2.…] [--train-limit 2000] [--dataset gsm8k]

Prints one JSON line: the selector's sha256, the chosen penalty, dev top-1 accuracy of the vote
vs the selector, dev correct-in-beam, and the problems it was fitted on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def collect(session, specialists, problem_ids, config, cache: Path | None = None):
    """Per problem: (features (G, F), correct per group) — gold read only to label the groups."""
    from app.db.models import Problem
    from app.evaluation import answer_matches
    from app.inference.selector import FEATURES
    from app.inference.store import problem_texts
    from app.inference.solve import solve

    if cache is not None and cache.is_file():
        rows = json.loads(cache.read_text())
        return [(np.asarray(x, dtype=float).reshape(len(y), len(FEATURES)), y) for x, y in rows]
    texts = problem_texts(session, problem_ids)
    ids = [i for i in problem_ids if i in texts]
    solutions = solve([texts[i] for i in ids], specialists, config)
    gold = dict(session.query(Problem.id, Problem.gold_answer).filter(Problem.id.in_(ids)).all())
    rows = []
    for problem_id, solution in zip(ids, solutions):  # labelling happens after inference
        labels = [answer_matches(c["answer"], gold[problem_id]) for c in solution.candidates]
        rows.append((solution.features or [], labels))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rows))
    return [(np.asarray(x, dtype=float).reshape(len(y), len(FEATURES)), y) for x, y in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-version", default=None, help="Specialists' version (default: latest).")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--dev-limit", type=int, default=None)
    parser.add_argument("--theta", type=float, default=0.85)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-paths", type=int, default=100)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from app.config import get_settings
    from app.db.session import session_scope
    from app.evaluation import split_problem_ids
    from app.inference.search import SearchConfig
    from app.inference.selector import fit_selector, rank_accuracy, save_selector, selector_path
    from training.specialists import load_specialists

    started = time.perf_counter()
    config = SearchConfig(theta=args.theta, top_k=args.top_k, max_paths=args.max_paths)
    home = Path(get_settings().mycelium_home)
    with session_scope() as session:
        specialists = load_specialists(session, args.model_version)
        version = specialists.model_version
        cache = home / "cache" / "selector" / version
        tag = f"{args.dataset}_t{args.theta}_k{args.top_k}_p{args.max_paths}"
        train_ids = split_problem_ids(session, args.dataset, "train", args.train_limit)
        dev_ids = split_problem_ids(session, args.dataset, "dev", args.dev_limit)
        train = collect(session, specialists, train_ids, config, cache / f"train_{len(train_ids)}_{tag}.json")
        dev = collect(session, specialists, dev_ids, config, cache / f"dev_{len(dev_ids)}_{tag}.json")
    fits = {}
    for l2 in L2_GRID:
        selector = fit_selector(train, l2=l2)
        fits[l2] = (rank_accuracy(selector, dev), selector)
    best_l2 = max(fits, key=lambda l2: (fits[l2][0], l2))
    dev_vote = rank_accuracy(None, dev)
    in_beam = sum(any(y) for _, y in dev) / max(1, len(dev))
    meta = {"specialists": version, "dataset": args.dataset, "train_problems": len(train),
            "dev_problems": len(dev), "l2": best_l2, "dev_top1_vote": round(dev_vote, 4),
            "dev_top1_selector": round(fits[best_l2][0], 4), "dev_in_beam": round(in_beam, 4),
            "search": {"theta": args.theta, "top_k": args.top_k, "max_paths": args.max_paths}}
    saved = save_selector(fits[best_l2][1], selector_path(home, version), meta)
    print(json.dumps({"bench": "selector", "sha256": saved.sha256, "model_version": f"{version}.S{saved.sha256[:8]}",
                      **meta, "dev_top1_by_l2": {str(k): round(v[0], 4) for k, v in fits.items()},
                      "weights": dict(zip(saved.features, (round(w, 3) for w in saved.weights))),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
