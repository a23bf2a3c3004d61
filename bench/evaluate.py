"""Benchmark: held-out, gold-blind evaluation of the trained specialists (design §10).

Usage (from the repository root)::

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench MYCELIUM_HOME=/work/bench_home \\
        nice -n 10 .venv/bin/python bench/evaluate.py [--dataset gsm8k|math] [--split test] [--limit N]
        [--model-version C1v1.…] [--reuse] [--theta 0.85] [--top-k 3] [--no-selector]

The database is the one ``bench/training.py`` trained in (its ``test`` split is hashed from the
train files at ingest and never enters a training snapshot; the contamination guard refuses
otherwise). Every problem is answered again (``--reuse`` keeps stored answers and their times),
then compared with gold. Prints one JSON line: ``n``, ``accuracy``, ``correct_in_beam``,
``ms_per_problem`` (median wall time per problem on this machine, the batched C1/C2/C4/C5/C6 pass
shared out plus this problem's C3 pass and search), ``ms_mean``, ``model_version``, ``answered``,
``no_answer``, ``disagreement``, ``paths_median``, ``seconds`` and, for reference, the anchor of
the original project (``anchor``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench"
ANCHORS = {
    "gsm8k": "goal 65% (a 350M program-writing model on GSM8K test); floor 25%",
    "math": "original project's problem-text-only MATH accuracy 17-18%",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gsm8k", choices=("gsm8k", "math"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model-version", default=None)
    parser.add_argument("--reuse", action="store_true", help="Keep stored answers instead of recomputing.")
    parser.add_argument("--theta", type=float, default=0.85)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-paths", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-selector", action="store_true", help="Rank candidates by the plain vote.")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads (1 when two evaluations share 2 cores).")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    import torch

    torch.set_num_threads(max(1, args.threads))
    from app.db.session import session_scope
    from app.evaluation import evaluate, split_problem_ids
    from app.inference.search import SearchConfig
    from training.specialists import load_specialists

    started = time.perf_counter()
    with session_scope() as session:
        from app.inference.store import specialists_part, with_selector

        # The candidate selector fitted for these specialists (training/selector.py) when one
        # exists, named in model_version (….S<sha8>); --no-selector: the plain vote.
        specialists = load_specialists(session, specialists_part(args.model_version))
        if not args.no_selector:
            specialists = with_selector(specialists, args.model_version)
        ids = split_problem_ids(session, args.dataset, args.split, args.limit)
        config = SearchConfig(theta=args.theta, top_k=args.top_k, max_paths=args.max_paths)
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            if done[0] % 256 < n or done[0] == len(ids):
                print(f"  {args.dataset}: {done[0]}/{len(ids)}", file=sys.stderr, flush=True)

        report, _ = evaluate(session, specialists, ids, recompute=not args.reuse, config=config,
                             batch_size=args.batch_size, progress=progress, dataset=args.dataset,
                             split=args.split, theta=args.theta, top_k=args.top_k)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["anchor"] = ANCHORS[args.dataset]
    print(json.dumps({"bench": "evaluate", **report}))


if __name__ == "__main__":
    main()
