"""Benchmark: search settings compared on the DEV split (tuning happens here, never on test).

Solves the first ``--limit`` dev problems once per setting of :class:`app.inference.search.SearchConfig`
(the specialists' proposals are computed once and shared), then — after every setting has
answered — compares each answer with gold. Nothing is stored. Prints one JSON line per setting
(``setting``, ``n``, ``accuracy``, ``correct_in_beam``, ``ms_per_problem`` median) and a last
line naming the best setting by dev accuracy (ties: the first listed, the default).

Usage::

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench MYCELIUM_HOME=/work/bench_home \\
        .venv/bin/python bench/search_sweep.py [--limit 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench"
SETTINGS: dict[str, dict] = {
    "default": {},
    "no_c5_factor": {"dependency_weight": 0.0},
    "no_c1_coverage": {"coverage_weight": 0.0},
    "no_c5_no_c1": {"dependency_weight": 0.0, "coverage_weight": 0.0},
    "vote_max": {"vote": "max"},
    "no_dead_step_penalty": {"dead_step_factor": 1.0},
    "stop_theta_0.95": {"stop_theta": 0.95},
    "stops_never_collapsed": {"stop_theta": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="Comma list of: " + ", ".join(SETTINGS))
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    import torch

    torch.set_num_threads(args.threads)
    from app.db.models import Problem
    from app.db.session import session_scope
    from app.evaluation import answer_matches, split_problem_ids
    from app.inference.search import SearchConfig
    from app.inference.solve import solve_proposal
    from training.specialists import load_specialists

    with session_scope() as session:
        specialists = load_specialists(session)
        ids = split_problem_ids(session, args.dataset, "dev", args.limit)
        problems = {p.id: p for p in session.query(Problem).filter(Problem.id.in_(ids))}
        texts = [problems[i].text for i in ids]
        proposals = specialists.propose(texts)
        answers: dict[str, list] = {}
        for name in args.settings.split(","):
            config = SearchConfig(**SETTINGS[name])
            rows = []
            for text, proposal in zip(texts, proposals):
                began = time.perf_counter()
                solution = solve_proposal(text, proposal, specialists, config)
                rows.append((solution.answer, [c["answer"] for c in solution.candidates],
                             (time.perf_counter() - began) * 1000.0))
            answers[name] = rows
            print(f"  {name}: solved {len(rows)}", file=sys.stderr, flush=True)
        # Gold is read only now, after every setting has answered.
        gold = [problems[i].gold_answer for i in ids]
        best = None
        for name, rows in answers.items():
            correct = sum(answer_matches(a, g) for (a, _, _), g in zip(rows, gold))
            in_beam = sum(any(answer_matches(c, g) for c in cands) for (_, cands, _), g in zip(rows, gold))
            figure = {"bench": "search_sweep", "setting": name, "config": SETTINGS[name], "n": len(rows),
                      "accuracy": round(correct / max(1, len(rows)), 4),
                      "correct_in_beam": round(in_beam / max(1, len(rows)), 4),
                      "ms_per_problem": round(statistics.median(ms for _, _, ms in rows), 1),
                      "model_version": specialists.model_version}
            print(json.dumps(figure), flush=True)
            if best is None or figure["accuracy"] > best[1]:
                best = (name, figure["accuracy"])
        print(json.dumps({"bench": "search_sweep", "best": best[0], "accuracy": best[1], "split": "dev"}))


if __name__ == "__main__":
    main()
