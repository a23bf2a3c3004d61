"""Read the selection pool from the database into :class:`labeling.selection.Candidate` values.

The pool: problems of the chosen splits that have something a reviewer can correct (a region,
a machine label or a specialist prediction) and no live human label yet. Model decisions are
the per-region scores (attention-derived or model regions), the confidences of live machine
labels, and specialist predictions (``payload["probs"]`` vectors when present, else the
scalar ``confidence``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import exists, select, union
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    Label,
    LabelSource,
    Prediction,
    Problem,
    Program,
    ProgramSource,
    Region,
    RegionSource,
    Split,
)
from labeling.selection import Candidate, binary_distribution

CONTEXT_SOURCES: tuple[RegionSource, ...] = (RegionSource.MODEL, RegionSource.CLAUSE, RegionSource.IAF)


def _live_label_filter(alias: Any) -> Any:
    superseding = aliased(Label)
    return alias.is_withdrawal.is_(False) & ~exists().where(superseding.supersedes_id == alias.id)


def pool_problem_ids(session: Session, splits: Sequence[Split] = (Split.TRAIN,)) -> list[int]:
    """Problems with something to review and no live human label, in ``splits``."""
    live = aliased(Label)
    reviewable = union(
        select(Region.problem_id),
        select(live.problem_id).where(_live_label_filter(live)),
        select(Prediction.problem_id),
    ).subquery()
    human = aliased(Label)
    query = (
        select(Problem.id)
        .where(Problem.split.in_(list(splits)), Problem.id.in_(select(reviewable.c.problem_id)))
        .where(
            ~exists().where(
                human.problem_id == Problem.id, human.source == LabelSource.HUMAN, _live_label_filter(human)
            )
        )
        .order_by(Problem.id)
    )
    return list(session.scalars(query))


def _decisions_from_prediction(payload: dict[str, Any], confidence: float | None) -> list[np.ndarray]:
    probs = payload.get("probs") if isinstance(payload, dict) else None
    rows: list[np.ndarray] = []
    if isinstance(probs, list) and probs:
        matrix = probs if isinstance(probs[0], list) else [probs]
        rows = [np.asarray(row, dtype=float) for row in matrix if isinstance(row, list) and len(row) >= 2]
    if not rows and confidence is not None:
        rows = [binary_distribution([confidence])[0]]
    return rows


def load_candidates(session: Session, problem_ids: Iterable[int]) -> list[Candidate]:
    """Candidates for ``problem_ids`` (bulk queries; one pass per table)."""
    ids = list(problem_ids)
    if not ids:
        return []
    texts = dict(session.execute(select(Problem.id, Problem.text).where(Problem.id.in_(ids))).all())
    decisions: dict[int, list[np.ndarray]] = defaultdict(list)
    regions: dict[int, list[tuple[int, int]]] = defaultdict(list)
    operands: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for problem_id, start, end, source, score in session.execute(
        select(Region.problem_id, Region.char_start, Region.char_end, Region.source, Region.score).where(
            Region.problem_id.in_(ids)
        )
    ):
        if source == RegionSource.OPERAND:
            operands[problem_id].append((start, end))
            continue
        if source in CONTEXT_SOURCES:
            regions[problem_id].append((start, end))
        if score is not None:
            decisions[problem_id].append(binary_distribution([score])[0])
    live = aliased(Label)
    for problem_id, confidence in session.execute(
        select(live.problem_id, live.confidence).where(
            live.problem_id.in_(ids),
            live.source != LabelSource.HUMAN,
            live.confidence.is_not(None),
            _live_label_filter(live),
        )
    ):
        decisions[problem_id].append(binary_distribution([confidence])[0])
    for problem_id, payload, confidence in session.execute(
        select(Prediction.problem_id, Prediction.payload, Prediction.confidence).where(Prediction.problem_id.in_(ids))
    ):
        decisions[problem_id].extend(_decisions_from_prediction(payload, confidence))
    programs: dict[int, list[tuple[bool, str | None]]] = defaultdict(list)
    for problem_id, executes, correct, error in session.execute(
        select(Program.problem_id, Program.executes, Program.correct, Program.error)
        .where(Program.problem_id.in_(ids), Program.source == ProgramSource.TEACHER)
        .order_by(Program.id)
    ):
        ok = bool(executes) and correct is True
        programs[problem_id].append((ok, error or (None if executes else "does not execute")))
    execution = {
        problem_id: (
            not any(ok for ok, _ in verdicts),  # one validated teacher program clears the problem
            next((error for ok, error in verdicts if not ok and error), None),
        )
        for problem_id, verdicts in programs.items()
    }
    return [
        Candidate(
            problem_id=problem_id,
            text=texts[problem_id],
            decisions=tuple(decisions[problem_id]),
            regions=tuple(regions[problem_id]),
            operands=tuple(operands[problem_id]),
            execution_failed=execution[problem_id][0] if problem_id in execution else None,
            execution_error=execution[problem_id][1] if problem_id in execution else None,
        )
        for problem_id in ids
        if problem_id in texts
    ]
