"""Fit the candidate selector (``app.inference.selector``) and the program verifier it reads.

Database shell. Runs the gold-blind search (plain vote, no selector) over TRAIN and DEV problems
and labels every answer group with gold afterwards (training data: gold labels candidates here,
never at inference). Then:

1. the program verifier (:mod:`training.verifier`) is trained on the TRAIN candidates, with
   early stopping on DEV, and scores every executed program;
2. the listwise selector is fitted over the groups' gold-blind features (vote mass, path
   probability parts, mention use, answer shape, verifier logits …): by default on DEV
   candidates with the ridge penalty picked by 5-fold cross-validation on DEV (the verifier's
   logits on its own TRAIN candidates are in-sample, and the specialists are more confident on
   the problems they were trained on, so DEV candidates look like test ones); with
   ``--fit-on train --no-verifier`` on TRAIN candidates with the penalty picked on DEV.

Test is never read. Selector and verifier are saved with their sha256 under
``MYCELIUM_HOME/models/selector/<specialists' model_version>/`` (``selector.json``,
``verifier/``); inference loads them with the models (``app.inference.store.with_selector``)
and names them in ``model_version`` (``.S<sha8>``). Searched candidates are cached under
``MYCELIUM_HOME/cache/selector`` (``--collect-only train`` and ``--collect-only dev`` can run
as two processes, one thread each).

Usage::

    DATABASE_URL=… MYCELIUM_HOME=… nice -n 5 .venv/bin/python -m training.selector \\
        [--model-version C1v2.…] [--fit-on dev|train] [--no-verifier] [--train-limit 1500]

Prints one JSON line: the selector's sha256, the chosen penalty, dev top-1 accuracy of the vote
vs the selector, dev correct-in-beam, the verifier's dev figures and the problems used.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


CHUNK = 300  # problems per cached search chunk


def collect(session, specialists, problem_ids, config, cache_dir: Path | None = None,
            tag: str = "") -> list[tuple[str, object, list[bool]]]:
    """Per problem: (text, its :class:`~app.inference.selector.RankingInputs`, correct per answer
    group) — gold read only to label the groups, after the search.

    With ``cache_dir`` the searched groups are kept as pickles (of our own making, under
    ``MYCELIUM_HOME/cache``) per chunk of :data:`CHUNK` problems, named by the chunk's first
    problem id: features can change without searching again, a killed run resumes, and two
    processes can search disjoint ranges that a later run reads together."""
    from app.db.models import Problem
    from app.evaluation import answer_matches
    from app.inference.selector import RankingInputs
    from app.inference.store import problem_texts
    from app.inference.solve import solve

    rows = []
    for first in range(0, len(problem_ids), CHUNK):
        chunk = list(problem_ids[first:first + CHUNK])
        file = cache_dir / f"{tag}_{chunk[0]}_{len(chunk)}.pkl" if cache_dir is not None else None
        if file is not None and file.is_file():
            rows.extend(pickle.loads(file.read_bytes()))
            continue
        texts = problem_texts(session, chunk)
        ids = [i for i in chunk if i in texts]
        solutions = []
        for start in tqdm(range(0, len(ids), 32), desc=f"search {tag} {chunk[0]}+{len(chunk)}", unit="batch",
                          file=sys.stderr):
            solutions.extend(solve([texts[i] for i in ids[start:start + 32]], specialists, config))
        gold = dict(session.query(Problem.id, Problem.gold_answer).filter(Problem.id.in_(ids)).all())
        part = []
        for problem_id, solution in zip(ids, solutions):  # labelling happens after inference
            ranking = solution.ranking or RankingInputs([], 0, [], [])
            labels = [answer_matches(g.answer, gold[problem_id]) for g in ranking.groups]
            part.append((texts[problem_id], ranking, labels))
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(part))
            partial.replace(file)  # atomic: a killed run leaves no half-written chunk
        rows.extend(part)
    return rows


def score_with_verifier(rows, verifier) -> None:
    """Set every executed program's ``verified`` logit (in place), one pass per problem."""
    for text, ranking, _ in tqdm(rows, desc="verify", unit="problem", file=sys.stderr):
        members = [m for g in ranking.groups for m in g.members]
        for member, logit in zip(members, verifier.logits(text, [m.path for m in members])):
            member.verified = float(logit)


def reference_results(session, texts) -> dict:
    """Problem text → the multiset of its reference program's step results (training data: which
    candidates compute what the reference computes, :func:`training.verifier.candidate_programs`)."""
    from app.db.models import Problem, Program, ProgramSource
    from training.verifier import step_value_keys

    wanted = set(texts)
    rows = session.query(Problem.text, Program.steps).join(Program, Program.problem_id == Problem.id).filter(
        Program.source == ProgramSource.REFERENCE, Problem.text.in_(wanted))
    return {text: step_value_keys([s["result"] for s in steps.get("steps", []) if s.get("result") is not None])
            for text, steps in rows}


def fit_verifier(specialists, train_rows, dev_rows, args, epochs: int | None = None, references=None):
    """Train the program verifier on ``train_rows``' candidates with early stopping on
    ``dev_rows``' (none: ``epochs`` fixed epochs); ``references`` (:func:`reference_results`)
    picks the training positives by the reference rule. Returns (head, metrics)."""
    from training.heads import HeadConfig
    from training.registry import cache_dir
    from training.verifier import train_verifier, verifier_corpus

    c3 = specialists.specialists["C3"]
    ops, constants = c3.maps["ops"], c3.maps["constants"]
    train_corpus, train_examples = verifier_corpus(train_rows, c3.backbone, ops, constants, cache_dir(), references)
    dev_corpus, dev_examples = verifier_corpus(dev_rows, c3.backbone, ops, constants, cache_dir())

    def on_epoch(epoch: int, loss: float, score: float | None) -> None:
        shown = "—" if score is None else f"{score:.4f}"
        print(f"  verifier epoch {epoch}: loss {loss:.4f} dev top-1 {shown}", file=sys.stderr, flush=True)

    began = time.perf_counter()
    c6 = specialists.specialists["C6"]
    stop = getattr(c6.head, "stop", None) if args.verifier_init == "stop" else None
    if stop is not None and list(c6.maps["ops"]) != list(ops):  # op embeddings must mean the same ops
        stop = None
    lr = args.verifier_lr or (3e-4 if stop is not None else 1e-3)
    head, meta = train_verifier(train_corpus, train_examples, dev_corpus, dev_examples, len(ops),
                                c3.backbone.hidden_size, epochs=epochs or args.epochs, on_epoch=on_epoch,
                                init=stop, lr=lr, with_path_stats=args.verifier_path_stats == "on",
                                head_config=HeadConfig(**c6.config["head_config"]) if stop else None)
    return head, {**meta, "lr": lr, "train_problems": len(train_examples),
                  "positives": "reference" if references is not None else "answer",
                  "seconds": round(time.perf_counter() - began, 1)}


def dev_folds(n: int, folds: int, seed: int = 0) -> list[list[int]]:
    """Indices of DEV problems per cross-fitting fold (a fixed permutation, so a rerun with
    ``--reuse-verifier`` gives every problem the fold it was scored with before)."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(order[k::folds].tolist()) for k in range(folds)]


def verify_dev(specialists, rows, directory: Path, args, references=None) -> tuple[str, dict]:
    """Train (or with ``--reuse-verifier`` load) the verifier and set every DEV candidate's
    ``verified`` logit, which the selector is then fitted on. Returns (the sha256 of the verifier
    inference will load, its metrics).

    ``--verifier-data train``: trained on TRAIN candidates, early stopping on DEV. ``train+dev``
    (cross-fitted) adds DEV's candidates to what the verifier learns from. For each of
    ``--verifier-folds`` folds of DEV, a verifier learns from TRAIN plus the other folds (early
    stopping on its own fold) and scores its fold, so every DEV logit the selector sees comes from
    a verifier that never saw that problem; the verifier saved for inference learns from TRAIN
    and all of DEV for the folds' median best epoch count. Test is never read."""
    from training.verifier import CONFIG as VERIFIER_CONFIG
    from training.verifier import VERIFIER_DIR, LoadedVerifier, save_verifier

    c3 = specialists.specialists["C3"]
    ops, constants = c3.maps["ops"], c3.maps["constants"]
    final = directory / VERIFIER_DIR
    if args.verifier_data == "train":
        if not (args.reuse_verifier and (final / VERIFIER_CONFIG).is_file()):
            head, meta = fit_verifier(specialists, rows["train"], rows["dev"], args, references=references)
            save_verifier(final, head, ops, constants, c3.backbone, meta)
        verifier = LoadedVerifier(final)
        score_with_verifier(rows["dev"], verifier)
        return verifier.sha256, json.loads((final / VERIFIER_CONFIG).read_text())["metrics"]
    folds = dev_folds(len(rows["dev"]), args.verifier_folds)
    fold_meta = []
    for k, held in enumerate(folds):
        fold_dir = directory / f"{VERIFIER_DIR}_fold{k}of{len(folds)}"
        outside = [rows["dev"][i] for i in held]
        if not (args.reuse_verifier and (fold_dir / VERIFIER_CONFIG).is_file()):
            inside = [r for i, r in enumerate(rows["dev"]) if i not in set(held)]
            head, meta = fit_verifier(specialists, rows["train"] + inside, outside, args, references=references)
            save_verifier(fold_dir, head, ops, constants, c3.backbone, meta)
        score_with_verifier(outside, LoadedVerifier(fold_dir))
        fold_meta.append(json.loads((fold_dir / VERIFIER_CONFIG).read_text())["metrics"])
    if not (args.reuse_verifier and (final / VERIFIER_CONFIG).is_file()):
        best_epochs = [max((h for h in m["history"] if h["dev_top1"] is not None),
                           key=lambda h: (h["dev_top1"], -h["epoch"]))["epoch"] for m in fold_meta]
        head, meta = fit_verifier(specialists, rows["train"] + rows["dev"], [], args,
                                  epochs=max(1, int(np.median(best_epochs))), references=references)
        fold_top1 = [m["dev_top1"] for m in fold_meta]
        meta.update({"data": "train+dev (cross-fitted)", "folds": len(folds), "fold_best_epochs": best_epochs,
                     "fold_dev_top1": fold_top1, "dev_top1": round(float(np.mean(fold_top1)), 4),
                     "dev_problems": sum(m["dev_problems"] for m in fold_meta),
                     "note": "dev top-1 of each fold's verifier on its own held-out fold (also its early stopping)"})
        save_verifier(final, head, ops, constants, c3.backbone, meta)
    return LoadedVerifier(final).sha256, json.loads((final / VERIFIER_CONFIG).read_text())["metrics"]


def feature_rows(rows) -> list[tuple[np.ndarray, list[bool]]]:
    """(G, F) features with their labels, per problem, under this code's :data:`FEATURES`
    (candidates cached before the unit features get their units from the text here)."""
    from app.inference.selector import FEATURES
    from app.inference.units import problem_units
    from training.examples import mentions_of

    for text, ranking, _ in rows:
        if ranking.groups and ranking.units is None:
            ranking.units = problem_units(text, mentions_of(text))
    return [(ranking.features() if ranking.groups else np.zeros((0, len(FEATURES))), labels)
            for _, ranking, labels in rows]


def cross_validated(problems, l2: float, folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold top-1 accuracy of the selector fitted with ``l2`` (folds by problem)."""
    from app.inference.selector import fit_selector, rank_accuracy

    order = np.random.default_rng(seed).permutation(len(problems))
    hits = 0.0
    for k in range(folds):
        held = set(order[k::folds].tolist())
        selector = fit_selector([p for i, p in enumerate(problems) if i not in held], l2=l2)
        part = [p for i, p in enumerate(problems) if i in held]
        hits += rank_accuracy(selector, part) * len(part)
    return hits / max(1, len(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-version", default=None, help="Specialists' version (default: latest).")
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--fit-on", choices=("train", "dev"), default="dev",
                        help="dev (default): fit the selector on DEV, penalty by 5-fold CV on DEV (the dev "
                             "figure is out-of-fold); train: fit on TRAIN, penalty on DEV (needs --no-verifier).")
    parser.add_argument("--no-verifier", action="store_true", help="Fit the selector without the program verifier.")
    parser.add_argument("--collect-only", choices=("train", "dev"), default=None,
                        help="Only search and cache one split's candidates (run both in parallel, then fit).")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads (1 when two collections share 2 cores).")
    parser.add_argument("--train-limit", type=int, default=1500)
    parser.add_argument("--train-offset", type=int, default=0,
                        help="Skip this many TRAIN problems (with --collect-only: search another range in parallel).")
    parser.add_argument("--dev-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=8, help="Verifier epochs (early stopping on dev).")
    parser.add_argument("--verifier-init", choices=("none", "stop"), default="none",
                        help="none (default): a fresh verifier; stop: warm-start it from C6's stop head (on "
                             "GSM8K dev it scored the same, 0.293 vs 0.298 top-1, and trained twice as long).")
    parser.add_argument("--verifier-lr", type=float, default=None,
                        help="Verifier learning rate (default 3e-4 warm-started, 1e-3 from scratch).")
    parser.add_argument("--verifier-path-stats", choices=("on", "off"), default="on",
                        help="on (default): the verifier also reads the search's scores of each path (log score, "
                             "C2/C3/C6 log probabilities, length); off: only the program, its values and the text.")
    parser.add_argument("--verifier-data", choices=("train", "train+dev"), default="train",
                        help="train (default): the verifier learns from TRAIN candidates; train+dev: cross-fitted "
                             "over DEV folds (each DEV problem scored by a verifier that did not see it), and the "
                             "saved verifier learns from TRAIN and DEV.")
    parser.add_argument("--verifier-positives", choices=("answer", "reference"), default="answer",
                        help="answer (default): the best path of every answer group that matches gold is a "
                             "positive; reference: the best path that computes the reference program's step "
                             "results (groups right by accident are left out).")
    parser.add_argument("--verifier-folds", type=int, default=2, help="DEV folds for --verifier-data train+dev.")
    parser.add_argument("--reuse-verifier", action="store_true",
                        help="Keep the verifier already saved for these specialists (refit only the selector).")
    parser.add_argument("--theta", type=float, default=0.85)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-paths", type=int, default=100)
    args = parser.parse_args()
    use_verifier = not args.no_verifier
    if args.fit_on == "train" and use_verifier:
        parser.error("--fit-on train needs --no-verifier: the verifier's logits on its own training "
                     "candidates are in-sample")

    import torch

    torch.set_num_threads(max(1, args.threads))
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
        rows = {}
        for split, offset, limit in (("dev", 0, args.dev_limit), ("train", args.train_offset, args.train_limit)):
            if args.collect_only not in (None, split):
                continue
            if split == "train" and not use_verifier and args.fit_on == "dev" and args.collect_only is None:
                continue
            ids = split_problem_ids(session, args.dataset, split, offset + limit if limit else None)[offset:]
            rows[split] = collect(session, specialists, ids, config, cache, f"{split}_{tag}")
        references = (reference_results(session, [text for part in rows.values() for text, _, _ in part])
                      if args.verifier_positives == "reference" and not args.collect_only else None)
    if args.collect_only:
        print(json.dumps({"bench": "selector_collect", "split": args.collect_only, "problems": len(rows[args.collect_only]),
                          "seconds": round(time.perf_counter() - started, 1)}))
        return
    verifier_meta: dict = {}
    verifier_sha = ""
    if use_verifier:
        verifier_sha, verifier_meta = verify_dev(specialists, rows, selector_path(home, version).parent, args,
                                                 references)
    dev = feature_rows(rows["dev"])
    train = feature_rows(rows["train"]) if args.fit_on == "train" else []
    if args.fit_on == "train":
        scores = {l2: rank_accuracy(fit_selector(train, l2=l2), dev) for l2 in L2_GRID}
    else:
        scores = {l2: cross_validated(dev, l2) for l2 in L2_GRID}
    best_l2 = max(scores, key=lambda l2: (scores[l2], l2))
    fitted = fit_selector(train if args.fit_on == "train" else dev, l2=best_l2)
    fitted = replace(fitted, verifier_sha256=verifier_sha)
    dev_vote = rank_accuracy(None, dev)
    in_beam = sum(any(y) for _, y in dev) / max(1, len(dev))
    meta = {"specialists": version, "dataset": args.dataset, "fitted_on": args.fit_on,
            "train_problems": len(rows.get("train", [])), "dev_problems": len(dev), "l2": best_l2,
            "dev_top1_vote": round(dev_vote, 4), "dev_top1_selector": round(scores[best_l2], 4),
            "dev_top1_is": "held-out dev" if args.fit_on == "train" else "5-fold out-of-fold on dev",
            "dev_in_beam": round(in_beam, 4),
            "verifier": {k: v for k, v in verifier_meta.items() if k != "history"} or None,
            "search": {"theta": args.theta, "top_k": args.top_k, "max_paths": args.max_paths}}
    saved = save_selector(fitted, selector_path(home, version), meta)
    print(json.dumps({"bench": "selector", "sha256": saved.sha256, "model_version": f"{version}.S{saved.sha256[:8]}",
                      **meta, "dev_top1_by_l2": {str(k): round(v, 4) for k, v in scores.items()},
                      "weights": dict(zip(saved.features, (round(w, 3) for w in saved.weights))),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
