"""Benchmark: run ``check_solutions`` on the full GSM8K and MATH training files.

Usage (from the repository root)::

    .venv/bin/python bench/check_solutions.py [--gsm8k PATH] [--math PATH] [--only gsm8k|math]

Defaults are ``../shared/data/gsm8k_train.jsonl`` and ``../shared/data/math_train.jsonl``
relative to the repository root.  Prints each summary as JSON, then the ratio
figures the issue asks for and the wall time.
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
from app.execution.text_steps import find_annotations  # noqa: E402
from app.execution.validate import validate_solution  # noqa: E402

DEFAULT_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"
DEFAULT_MATH = ROOT.parent / "shared" / "data" / "math_train.jsonl"


def _progress(label: str) -> "callable":
    def report(done: int) -> None:
        if done % 1000 == 0:
            print(f"  {label}: {done} records", file=sys.stderr, flush=True)
    return report


def run_gsm8k(path: Path) -> None:
    started = time.perf_counter()
    summary = check_solutions(path, "gsm8k", _progress("gsm8k"))
    seconds = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    annotated = summary["annotated"] or 1
    print(f"gsm8k reproduced/annotated = {summary['reproduced']}/{summary['annotated']}"
          f" = {summary['reproduced'] / annotated:.4f}  (issue's ratio; 'reproduced' counts every record)")
    print(f"gsm8k reproduced/total     = {summary['reproduced']}/{summary['total']}"
          f" = {summary['reproduced'] / max(summary['total'], 1):.4f}")
    print(f"gsm8k wall time {seconds:.1f} s ({1000 * seconds / max(summary['total'], 1):.2f} ms/record)")
    gsm8k_details(path)


def gsm8k_details(path: Path) -> None:
    """Second pass: the strict ratio (annotated records only), final ops, the failures."""
    strict = annotated = 0
    final_ops: dict[str, int] = {}
    failures: list[tuple[int, str, str | None, str | None]] = []
    for index, record in enumerate(read_jsonl(path)):
        reasoning, gold = split_gsm8k_solution(record["answer"])
        result = validate_solution(record["question"], reasoning, gold, "gsm8k")
        is_annotated = bool(find_annotations(reasoning))
        annotated += is_annotated
        if result.correct:
            strict += is_annotated
            final_op = result.program["steps"][-1]["op"]
            final_ops[final_op] = final_ops.get(final_op, 0) + 1
        else:
            failures.append((index, result.reason or "unknown", gold, result.answer))
    print(f"gsm8k reproduced among annotated = {strict}/{annotated} = {strict / max(annotated, 1):.4f}"
          "  (strict: annotated records only)")
    print(f"gsm8k final op of reproduced programs: {dict(sorted(final_ops.items()))}")
    print("gsm8k failures (line index, reason, gold, program answer):")
    for index, reason, gold, answer in failures:
        print(f"  {index:5d} {reason:18s} gold={gold} answer={answer}")


def run_math(path: Path) -> None:
    started = time.perf_counter()
    summary = check_solutions(path, "math", _progress("math"))
    seconds = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    total = max(summary["total"], 1)
    print(f"math boxed_found     = {summary['boxed_found']}/{summary['total']}"
          f" = {summary['boxed_found'] / total:.4f}")
    print(f"math self_equivalent = {summary['self_equivalent']}/{summary['total']}"
          f" = {summary['self_equivalent'] / total:.4f}")
    print(f"math parsed_steps    = {summary['parsed_steps']}"
          f" ({summary['parsed_steps'] / total:.2f} per solution)")
    print(f"math wall time {seconds:.1f} s ({1000 * seconds / total:.2f} ms/record)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("--math", type=Path, default=DEFAULT_MATH)
    parser.add_argument("--only", choices=("gsm8k", "math"))
    arguments = parser.parse_args()
    if arguments.only in (None, "gsm8k"):
        run_gsm8k(arguments.gsm8k)
    if arguments.only in (None, "math"):
        run_math(arguments.math)


if __name__ == "__main__":
    main()
