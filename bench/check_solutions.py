"""Benchmark: run ``check_solutions`` on the full GSM8K and MATH training files.

Usage (from the repository root)::

    .venv/bin/python bench/check_solutions.py [--gsm8k PATH] [--math PATH] [--only gsm8k|math] [--details]

Defaults are ``../shared/data/gsm8k_train.jsonl`` and ``../shared/data/math_train.jsonl``
relative to the repository root. Prints one JSON line per dataset: exactly the figures of
``mycelium check-solutions FILE --dataset D --json`` (defined once in
``app.execution.check.FIGURES``), plus their ratios and the wall time. ``--details`` lists the
GSM8K failures (line index, reason, gold, program answer) on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.execution.answers import split_gsm8k_solution  # noqa: E402
from app.execution.check import check_solutions, read_jsonl  # noqa: E402
from app.execution.validate import validate_solution  # noqa: E402

DEFAULT_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"
DEFAULT_MATH = ROOT.parent / "shared" / "data" / "math_train.jsonl"


def _progress(label: str):  # noqa: ANN202
    def report(done: int) -> None:
        if done % 1000 == 0:
            print(f"  {label}: {done} records", file=sys.stderr, flush=True)

    return report


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0


def run(path: Path, dataset: str) -> dict:
    started = time.perf_counter()
    summary = check_solutions(path, dataset, _progress(dataset))
    seconds = time.perf_counter() - started
    figures = {"bench": "check_solutions", "dataset": dataset, **summary}
    if dataset == "gsm8k":
        figures["reproduced_rate"] = _ratio(summary["reproduced"], summary["total"])
        figures["reproduced_annotated_rate"] = _ratio(summary["reproduced_annotated"], summary["annotated"])
    else:
        figures["boxed_found_rate"] = _ratio(summary["boxed_found"], summary["total"])
        figures["self_equivalent_rate"] = _ratio(summary["self_equivalent"], summary["total"])
    figures["seconds"] = round(seconds, 1)
    return figures


def gsm8k_failures(path: Path) -> None:
    print("gsm8k failures (line index, reason, gold, program answer):", file=sys.stderr)
    for index, record in enumerate(read_jsonl(path)):
        reasoning, gold = split_gsm8k_solution(record["answer"])
        result = validate_solution(record["question"], reasoning, gold, "gsm8k")
        if not result.correct:
            print(f"  {index:5d} {result.reason or 'unknown':18s} gold={gold} answer={result.answer}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("--math", type=Path, default=DEFAULT_MATH)
    parser.add_argument("--only", choices=("gsm8k", "math"))
    parser.add_argument("--details", action="store_true", help="List the GSM8K failures on stderr.")
    arguments = parser.parse_args()
    for dataset, path in (("gsm8k", arguments.gsm8k), ("math", arguments.math)):
        if arguments.only in (None, dataset):
            print(json.dumps(run(path, dataset)), flush=True)
            if dataset == "gsm8k" and arguments.details:
                gsm8k_failures(path)


if __name__ == "__main__":
    main()
