"""Benchmark: build the C1–C6 labels of a whole dataset from its validated reference programs.

Default: a fresh database on the admin server (the machine's Postgres), the file ingested and
every reference solution validated (set-up, not timed), then ``build_labels`` timed (spaCy parse
in batches, derivation, writes, commits), then a second build (must create 0), then dropped.
With ``--database-url`` an existing database that is already ingested and validated is used
instead (and kept): run it before the first ``mycelium labels build``.

Prints one JSON line::

    {"problems": validated problems, "labels": rows created, "seconds": first build,
     "rows_per_s", "cpu_seconds": CPU time of this process during the first build (the wall
     time on an otherwise idle core; the machine is shared), "load_avg_1m", "problems_per_s", "stage_seconds": {load, parse, derive, write},
     "coverage": {task: labelled / validated problems}, "operands": {problem, step, constant},
     "operand_consistency": problem operands whose span parses to their value under their
     reading / all problem operands of validated programs, "second_build_created": n,
     "second_build_seconds": s, "failed": n}

Usage: ``python bench/labels.py [FILE] [--dataset gsm8k|math] [--admin-url URL | --database-url URL]``
(default FILE: ``../shared/data/gsm8k_train.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db.models import Problem, Program, ProgramSource  # noqa: E402
from app.execution.numbers import find_numbers  # noqa: E402
from app.execution.operations import parse_literal  # noqa: E402
from app.execution.program import mention_reading  # noqa: E402
from app.ingest import ingest_file  # noqa: E402
from app.labels.build import build_labels  # noqa: E402
from app.labels.derive import TASKS  # noqa: E402
from app.validation import validate_reference  # noqa: E402
from bench.ingest import drop_database, fresh_database  # noqa: E402

DEFAULT_FILE = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def set_up(url: str, path: Path, dataset: str) -> None:
    engine = create_engine(url)
    with Session(engine) as session:
        ingest_file(session, path, dataset)
        session.commit()
        for problem in session.scalars(select(Problem).order_by(Problem.id)):
            validate_reference(session, problem)
        session.commit()
    engine.dispose()


def operand_consistency(session: Session) -> tuple[int, int]:
    """(consistent, total) problem operands over every validated reference/teacher program.

    Consistent: a number mention of the problem sits exactly at the operand's span and its value,
    under the operand's stored reading (or, when none is stored, under some reading), equals the
    operand's value. Independent of the label code.
    """
    good = total = 0
    rows = session.execute(
        select(Problem.text, Program.steps).join(Problem, Problem.id == Program.problem_id)
        .where(Program.correct.is_(True), Program.source.in_([ProgramSource.REFERENCE, ProgramSource.TEACHER]))
    )
    for problem_text, steps in rows:
        mentions = {(m.start, m.end): m for m in find_numbers(problem_text)}
        for step in steps["steps"]:
            for operand in step["operands"]:
                if operand["kind"] != "problem":
                    continue
                total += 1
                mention = mentions.get((operand["start"], operand["end"]))
                if mention is None:
                    continue
                reading = mention_reading(mention.value, parse_literal(operand["value"]))
                stored = operand.get("reading")
                if reading is not None and (stored is None or stored == reading
                                            or _holds(mention.value, parse_literal(operand["value"]), stored)):
                    good += 1
    return good, total


def _holds(mention_value, operand_value, reading: str) -> bool:  # noqa: ANN001
    if reading == "percent":
        return mention_value / 100 == operand_value
    if reading == "reciprocal":
        return mention_value != 0 and 1 / mention_value == operand_value
    return mention_value == operand_value


def measure(url: str) -> dict:
    engine = create_engine(url)
    with Session(engine) as session:
        start, cpu_start = time.perf_counter(), time.process_time()
        first = build_labels(session)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        load = os.getloadavg()[0]
        print(f"first build: {seconds:.1f} s {json.dumps(first)}", file=sys.stderr)
        start = time.perf_counter()
        second = build_labels(session)
        second_seconds = time.perf_counter() - start
        validated = first["problems"]
        coverage = {}
        for task in TASKS:
            labelled = session.execute(text(
                "SELECT count(DISTINCT l.problem_id) FROM labels l JOIN programs pr ON pr.id = l.program_id "
                "WHERE l.task::text = :task AND l.source = 'execution' AND pr.correct AND NOT l.is_withdrawal "
                "AND NOT EXISTS (SELECT 1 FROM labels s WHERE s.supersedes_id = l.id)"), {"task": task}).scalar_one()
            coverage[task] = round(labelled / validated, 4) if validated else None
        good, total = operand_consistency(session)
    engine.dispose()
    created = sum(first["created"].values())
    return {
        "problems": validated,
        "labels": created,
        "seconds": round(seconds, 3),
        "rows_per_s": round(created / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 3),
        "load_avg_1m": round(load, 2),
        "problems_per_s": round(validated / seconds, 1),
        "stage_seconds": first["seconds"],
        "coverage": coverage,
        "operands": first["operands"],
        "operand_consistency": round(good / total, 6) if total else None,
        "problem_operands_checked": total,
        "second_build_created": sum(second["created"].values()),
        "second_build_seconds": round(second_seconds, 3),
        "failed": first["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, nargs="?", default=DEFAULT_FILE)
    parser.add_argument("--dataset", default="gsm8k", choices=["gsm8k", "math"])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", help="An ingested and validated database to label (kept).")
    args = parser.parse_args()
    if args.database_url:
        print(json.dumps(measure(args.database_url)))
        return
    name, url = fresh_database(args.admin_url)
    try:
        set_up(url, args.file, args.dataset)
        print(json.dumps(measure(url)))
    finally:
        drop_database(args.admin_url, name)


if __name__ == "__main__":
    main()
