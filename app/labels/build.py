"""DB shell: append C1–C6 labels derived from execution-validated programs.

For every problem with a validated program (``programs.correct``; the reference program when it
validates, else the earliest correct teacher program) the six payloads of
:func:`app.labels.derive.derive_labels` are appended to ``labels`` with ``source=execution``,
``program_id`` and ``trace_id`` (the teacher trace whose IAF/clause regions went into C1: the
program's own trace, or for a reference program the trace of the problem's earliest correct
teacher program; NULL when there is none).

Rules per (problem, task):

* a live **human** label is never superseded (the task is skipped: ``human_kept``);
* a live execution label with the same payload and program is kept (``unchanged``): a second
  build appends nothing;
* otherwise the new label supersedes the newest live machine label (older parallel live machine
  labels get withdrawal rows, so exactly one label is live).

All-or-nothing per problem: a program whose labels cannot be derived (malformed JSON, an operand
span that is not its number) is reported by program id and skipped, and a database error on one
problem rolls back only that problem (savepoints). Problems are written in chunks; each chunk
holds the problems' advisory locks (``labeling.label_chain.lock_problem``) and is committed when
``commit`` is true, so locks are held briefly and finished chunks survive an interruption.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, exists, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    Dataset, Label, LabelSource, LabelTask, Problem, Program, ProgramSource, Region, RegionSource, Split,
)
from app.labels.derive import TASKS, LabelError, derive_labels
from app.labels.parse import clause_tables
from app.signals.config import ClauseConfig

__all__ = ["build_labels", "LabelCandidate", "load_candidates"]

log = logging.getLogger(__name__)
_PROBLEM_LOCK_NAMESPACE = 0x6D79  # same key space as labeling.label_chain.lock_problem
MAX_REPORTED_ERRORS = 50


@dataclass(frozen=True)
class LabelCandidate:
    """The validated program chosen for one problem, with what derivation needs."""

    problem_id: int
    program_id: int
    trace_id: int | None  # trace whose regions join C1 (None: no correct teacher trace)
    text: str
    gold_answer: str
    steps: Any  # programs.steps JSON


def load_candidates(
    session: Session,
    dataset: str | None = None,
    split: str | None = None,
    problem_ids: Sequence[int] | None = None,
) -> list[LabelCandidate]:
    """One validated program per problem (reference first, then the earliest correct teacher one)."""
    query = (
        select(Program.id, Program.problem_id, Program.trace_id, Program.source, Program.steps,
               Problem.text, Problem.gold_answer)
        .join(Problem, Problem.id == Program.problem_id)
        .where(Program.correct.is_(True), Program.source.in_([ProgramSource.REFERENCE, ProgramSource.TEACHER]))
        .ext(distinct_on(Program.problem_id))
        .order_by(Program.problem_id, case((Program.source == ProgramSource.REFERENCE, 0), else_=1), Program.id)
    )
    teacher = (
        select(Program.problem_id, func.min(Program.trace_id))
        .join(Problem, Problem.id == Program.problem_id)
        .where(Program.correct.is_(True), Program.source == ProgramSource.TEACHER, Program.trace_id.is_not(None))
        .group_by(Program.problem_id)
    )
    if dataset is not None:
        query = query.join(Dataset, Dataset.id == Problem.dataset_id).where(Dataset.name == dataset)
        teacher = teacher.join(Dataset, Dataset.id == Problem.dataset_id).where(Dataset.name == dataset)
    if split is not None:
        query = query.where(Problem.split == Split(split))
        teacher = teacher.where(Problem.split == Split(split))
    if problem_ids is not None:
        query = query.where(Program.problem_id.in_(list(problem_ids)))
        teacher = teacher.where(Program.problem_id.in_(list(problem_ids)))
    teacher_trace = dict(session.execute(teacher).all())
    return [
        LabelCandidate(problem_id, program_id, trace_id if source == ProgramSource.TEACHER
                       else teacher_trace.get(problem_id), text, gold, steps)
        for program_id, problem_id, trace_id, source, steps, text, gold in session.execute(query)
    ]


def _already_labelled(session: Session, candidates: list[LabelCandidate]) -> set[int]:
    """Problems whose every task has a live label from the candidate's program and trace, or a human one."""
    wanted = {c.problem_id: (c.program_id, c.trace_id) for c in candidates}
    done: set[int] = set()
    ids = sorted(wanted)
    for offset in range(0, len(ids), 5000):
        live = _live_labels(session, ids[offset:offset + 5000], with_payload=False)
        for problem_id in ids[offset:offset + 5000]:
            if all(any(row.source == LabelSource.HUMAN
                       or (row.source == LabelSource.EXECUTION
                           and (row.program_id, row.trace_id) == wanted[problem_id])
                       for row in live.get((problem_id, task), []))
                   for task in TASKS):
                done.add(problem_id)
    return done


def _trace_regions(session: Session, trace_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    regions: dict[int, list[tuple[int, int]]] = {}
    if not trace_ids:
        return regions
    rows = session.execute(
        select(Region.trace_id, Region.char_start, Region.char_end)
        .where(Region.trace_id.in_(sorted(trace_ids)),
               Region.source.in_([RegionSource.IAF, RegionSource.CLAUSE]))
    )
    for trace_id, start, end in rows:
        regions.setdefault(trace_id, []).append((start, end))
    return regions


def _live_labels(session: Session, problem_ids: list[int],
                 with_payload: bool = True) -> dict[tuple[int, str], list[Any]]:
    """Live labels of the problems, newest first, per (problem id, task value)."""
    superseding = aliased(Label)
    columns = [Label.id, Label.problem_id, Label.task, Label.source, Label.program_id, Label.trace_id]
    rows = session.execute(
        select(*columns, *([Label.payload] if with_payload else []))
        .where(Label.problem_id.in_(problem_ids), Label.is_withdrawal.is_(False),
               ~exists().where(superseding.supersedes_id == Label.id))
        .order_by(Label.id.desc())
    ).all()
    live: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        live.setdefault((row.problem_id, str(row.task)), []).append(row)
    return live


def _rows_for(candidate: LabelCandidate, payloads: dict[str, dict[str, Any]],
              live: dict[tuple[int, str], list[Any]], tally: Counter[str]) -> list[dict[str, Any]]:
    """Label rows (insert values) for one problem; counts decisions into ``tally``."""
    rows: list[dict[str, Any]] = []
    base = {"problem_id": candidate.problem_id, "source": LabelSource.EXECUTION, "confidence": 1.0,
            "trace_id": candidate.trace_id, "program_id": candidate.program_id, "round_id": None,
            "model_id": None, "annotation_id": None}
    for task in TASKS:
        current = live.get((candidate.problem_id, task), [])
        if any(row.source == LabelSource.HUMAN for row in current):
            tally["human_kept"] += 1
            continue
        if any(row.source == LabelSource.EXECUTION and row.program_id == candidate.program_id
               and row.payload == payloads[task] for row in current):
            tally["unchanged"] += 1
            continue
        rows.append({**base, "task": LabelTask(task), "payload": payloads[task],
                     "supersedes_id": current[0].id if current else None, "is_withdrawal": False})
        for older in current[1:]:
            rows.append({**base, "task": LabelTask(task), "confidence": None, "is_withdrawal": True,
                         "payload": {"reason": "superseded by a newer execution label",
                                     "program_id": candidate.program_id},
                         "supersedes_id": older.id})
    return rows


def _lock(session: Session, problem_ids: list[int]) -> None:
    session.execute(
        select(func.pg_advisory_xact_lock(_PROBLEM_LOCK_NAMESPACE, func.unnest(sorted(problem_ids))))
    )


def build_labels(
    session: Session,
    dataset: str | None = None,
    split: str | None = None,
    *,
    problem_ids: Sequence[int] | None = None,
    chunk_size: int = 500,
    n_process: int = 1,
    commit: bool = True,
    recheck: bool = False,
    clause_config: ClauseConfig = ClauseConfig(),
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Append the C1–C6 labels of every validated program (see the module docstring).

    Returns ``{"problems": validated problems considered, "labelled": problems with all six
    tasks labelled, "up_to_date": problems not derived again, "created": {task: new labels}, "withdrawn": n, "unchanged": n, "human_kept": n,
    "operands": {"problem": n, "step": n, "constant": n}, "failed": n, "errors": [one line each],
    "seconds": {"load", "parse", "derive", "write"}}``. With ``commit`` each chunk is committed
    (the caller's pending changes too); without it nothing is committed (savepoints only).
    ``progress(stage, done, total)`` is called per chunk.

    A problem whose six live labels already come from the same program and trace (or from a
    human) is not derived again (``up_to_date``) unless ``recheck`` — use it after changing the
    derivation code; identical payloads are still never appended twice.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    candidates = load_candidates(session, dataset, split, problem_ids)
    skipped = 0
    if not recheck:
        done = _already_labelled(session, candidates)
        skipped = len(done)
        candidates = [c for c in candidates if c.problem_id not in done]
    regions = _trace_regions(session, {c.trace_id for c in candidates if c.trace_id is not None})
    seconds["load"] = time.perf_counter() - clock

    clock = time.perf_counter()
    texts = sorted({c.text for c in candidates})
    tables = dict(zip(texts, clause_tables(texts, clause_config, n_process=n_process), strict=True))
    seconds["parse"] = time.perf_counter() - clock

    clock = time.perf_counter()
    derived: list[tuple[LabelCandidate, dict[str, dict[str, Any]]]] = []
    errors: list[str] = []
    operands: Counter[str] = Counter()
    for candidate in candidates:
        try:
            payloads = derive_labels(candidate.text, candidate.steps, candidate.gold_answer,
                                     tables[candidate.text], regions.get(candidate.trace_id, ()),
                                     clause_config.merge_whitespace_gaps)
        except LabelError as error:
            errors.append(f"program {candidate.program_id} (problem {candidate.problem_id}): {error}")
            continue
        for step in payloads["C3"]["steps"]:
            operands.update(operand["kind"] for operand in step["operands"])
        derived.append((candidate, payloads))
    seconds["derive"] = time.perf_counter() - clock

    clock = time.perf_counter()
    tally: Counter[str] = Counter()
    created: Counter[str] = Counter()
    for offset in range(0, len(derived), chunk_size):
        chunk = derived[offset:offset + chunk_size]
        _write_chunk(session, chunk, tally, created, errors)
        if commit:
            session.commit()
        if progress is not None:
            progress("write", min(offset + chunk_size, len(derived)), len(derived))
    seconds["write"] = time.perf_counter() - clock
    for line in errors:
        log.warning("labels: %s", line)
    return {
        "problems": len(candidates) + skipped,
        "labelled": len(derived) - tally["write_failed"] + skipped,
        "up_to_date": skipped,
        "created": {task: created[task] for task in TASKS},
        "withdrawn": created["withdrawn"],
        "unchanged": tally["unchanged"],
        "human_kept": tally["human_kept"],
        "operands": {kind: operands[kind] for kind in ("problem", "step", "constant")},
        "failed": len(errors),
        "errors": errors[:MAX_REPORTED_ERRORS],
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
    }


def _write_chunk(session: Session, chunk: list[tuple[LabelCandidate, dict[str, dict[str, Any]]]],
                 tally: Counter[str], created: Counter[str], errors: list[str]) -> None:
    """Insert one chunk in one statement; on a database error retry problem by problem."""
    ids = [candidate.problem_id for candidate, _ in chunk]
    _lock(session, ids)
    live = _live_labels(session, ids)
    local: Counter[str] = Counter()
    per_problem = [(candidate, _rows_for(candidate, payloads, live, local)) for candidate, payloads in chunk]
    rows = [row for _, problem_rows in per_problem for row in problem_rows]
    try:
        with session.begin_nested():
            if rows:
                session.execute(insert(Label), rows)
    except SQLAlchemyError:
        local = Counter()
        kept: list[tuple[LabelCandidate, list[dict[str, Any]]]] = []
        for candidate, payloads in chunk:
            problem_rows = _rows_for(candidate, payloads, live, local)
            try:
                with session.begin_nested():
                    if problem_rows:
                        session.execute(insert(Label), problem_rows)
            except SQLAlchemyError as error:
                local["write_failed"] += 1
                errors.append(f"program {candidate.program_id} (problem {candidate.problem_id}): "
                              f"database error {type(error).__name__}: {str(error).splitlines()[0][:200]}")
                continue
            kept.append((candidate, problem_rows))
        per_problem = kept
    tally.update(local)
    for _, problem_rows in per_problem:
        for row in problem_rows:
            created["withdrawn" if row["is_withdrawal"] else str(row["task"])] += 1


def label_fixture_file(session: Session, path: Any, dataset: str) -> dict[str, Any]:
    """Ingest a JSONL file, validate every reference solution and build labels (for tests).

    The quick way to a labelled database: ``label_fixture_file(db_session,
    tests.conftest.FIXTURES / "gsm8k_sample.jsonl", "gsm8k")``. Commits. Returns
    :func:`build_labels`' report.
    """
    from app.ingest import ingest_file
    from app.validation import validate_reference

    ingest_file(session, path, dataset)
    session.commit()
    problems = session.scalars(
        select(Problem).join(Dataset, Dataset.id == Problem.dataset_id).where(Dataset.name == dataset)
        .order_by(Problem.id)
    ).all()
    for problem in problems:
        validate_reference(session, problem)
    session.commit()
    return build_labels(session, dataset)
