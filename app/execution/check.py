"""Check a dataset file's reference solutions without a database (pure, read-only).

``check_solutions`` is what ``mycelium check-solutions FILE --dataset … --json``
prints.  For GSM8K it builds a program from every computation of each
reference solution (annotations, plain arithmetic, equations) and counts how
often its *final* result is the ``####`` answer.  For MATH it checks that a
``\\boxed{…}`` answer is found, that the gold answer is equivalent to itself
through the full parser (a parseability check, not string equality), and
counts the LaTeX steps the program builder keeps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.errors import UserError
from app.execution.answers import extract_boxed, split_gsm8k_solution
from app.execution.equivalence import self_equivalent
from app.execution.errors import ExecutionError
from app.execution.text_steps import find_annotations
from app.execution.validate import validate_solution

__all__ = ["FIGURES", "MalformedRecord", "check_solutions", "read_jsonl"]

# Each figure of check_solutions(), defined once (printed by the CLI table and the benchmark).
FIGURES: dict[str, str] = {
    "total": "records in the file",
    "annotated": "records with at least one <<…>> annotation (gsm8k)",
    "reproduced": "records whose program's final result equals the gold answer (gsm8k)",
    "reproduced_annotated": "annotated records whose program reproduces the gold answer (gsm8k)",
    "boxed_found": "solutions with a \\boxed{} answer (math)",
    "self_equivalent": "boxed answers equivalent to themselves through the parser (math)",
    "parsed_steps": "program steps kept over all solutions (math)",
    "failures_by_reason": "records whose check failed, by reason",
}

Progress = Callable[[int], None]  # called with the number of records done so far


class MalformedRecord(UserError):
    """A line of the checked file that is not a usable record; the message names file and line."""


def _numbered_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, record) of a JSON Lines file; blank lines skipped.

    Raises :class:`MalformedRecord` for invalid UTF-8, invalid or too deeply nested JSON, or a
    value that is not an object.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise MalformedRecord(f"{where}: invalid UTF-8 at byte {error.start + 1} of the line") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise MalformedRecord(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
            except RecursionError:
                raise MalformedRecord(f"{where}: invalid JSON (nested too deeply)") from None
            if not isinstance(record, dict):
                raise MalformedRecord(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSON Lines file (blank lines skipped); :class:`MalformedRecord` names a bad line."""
    for _number, record in _numbered_records(path):
        yield record


def _text(record: dict[str, Any], name: str, path: Path, number: int) -> str:
    """A string field of a record (absent: ``""``); :class:`MalformedRecord` if it is not a string."""
    value = record.get(name, "")
    if not isinstance(value, str):
        raise MalformedRecord(f"{path}:{number}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def check_solutions(path: Path, dataset: str, progress: Progress | None = None) -> dict[str, Any]:
    """Summary of a dataset file's reference solutions (see the module docstring).

    GSM8K: ``{"total", "annotated", "reproduced", "reproduced_annotated",
    "failures_by_reason"}`` — ``annotated`` counts records with at least one
    ``<<…>>``; ``reproduced`` counts records (annotated or not) whose program's
    final result equals the gold answer (``reproduced / total`` is the headline
    rate); ``reproduced_annotated`` counts the annotated ones among them
    (``reproduced_annotated / annotated`` is the strict rate); failures are
    keyed by ``ValidationResult.reason`` (``reproduced + failures == total``).
    :data:`FIGURES` describes each key; the CLI and ``bench/check_solutions.py``
    print these same figures.

    MATH: ``{"total", "boxed_found", "self_equivalent", "parsed_steps",
    "failures_by_reason"}`` — ``parsed_steps`` is the total number of program
    steps kept over all solutions; failure keys are ``boxed_not_found``,
    ``not_self_equivalent`` (or the typed error's reason) and, for solutions
    whose program does not reproduce the gold answer, ``program_<reason>``.
    """
    if dataset == "gsm8k":
        return _check_gsm8k(path, progress)
    if dataset == "math":
        return _check_math(path, progress)
    raise ValueError(f"unknown dataset {dataset!r}; expected 'gsm8k' or 'math'")


def _check_gsm8k(path: Path, progress: Progress | None) -> dict[str, Any]:
    total = annotated = reproduced = reproduced_annotated = 0
    failures: Counter[str] = Counter()
    for number, record in _numbered_records(path):
        question, answer = _text(record, "question", path, number), _text(record, "answer", path, number)
        total += 1
        reasoning, gold = split_gsm8k_solution(answer)
        is_annotated = bool(find_annotations(reasoning))
        annotated += is_annotated
        result = validate_solution(question, reasoning, gold, "gsm8k")
        if result.correct:
            reproduced += 1
            reproduced_annotated += is_annotated
        else:
            failures[result.reason or "unknown"] += 1
        if progress is not None:
            progress(total)
    return {"total": total, "annotated": annotated, "reproduced": reproduced,
            "reproduced_annotated": reproduced_annotated, "failures_by_reason": dict(sorted(failures.items()))}


def _check_math(path: Path, progress: Progress | None) -> dict[str, Any]:
    total = boxed_found = equivalent_to_itself = parsed_steps = 0
    failures: Counter[str] = Counter()
    for number, record in _numbered_records(path):
        problem, solution = _text(record, "problem", path, number), _text(record, "solution", path, number)
        total += 1
        try:
            gold, missing = extract_boxed(solution), "boxed_not_found"
        except ExecutionError as error:  # a solution too long to scan
            gold, missing = None, error.reason
        if gold is None:
            failures[missing] += 1
        else:
            boxed_found += 1
            try:
                if self_equivalent(gold):
                    equivalent_to_itself += 1
                else:
                    failures["not_self_equivalent"] += 1
            except ExecutionError as error:
                failures[error.reason] += 1
        result = validate_solution(problem, solution, gold, "math")
        parsed_steps += len(result.program.get("steps", []))
        if not result.correct:
            failures[f"program_{result.reason or 'unknown'}"] += 1
        if progress is not None:
            progress(total)
    return {"total": total, "boxed_found": boxed_found, "self_equivalent": equivalent_to_itself,
            "parsed_steps": parsed_steps, "failures_by_reason": dict(sorted(failures.items()))}
