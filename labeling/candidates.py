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
    InferenceResult,
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


def _top_vector(top: Any, chosen_p: Any = None) -> np.ndarray | None:
    """``[["DIV", 0.93], ["MUL", 0.05]]`` → ``[0.93, 0.05, 0.02]`` (the rest of the mass as one class)."""
    values = [float(p) for _, p in top or [] if isinstance(p, (int, float))] if isinstance(top, list) else []
    if not values and isinstance(chosen_p, (int, float)):
        values = [float(chosen_p)]
    if not values:
        return None
    rest = max(0.0, 1.0 - sum(values))
    return np.asarray([*values, rest] if rest > 1e-6 or len(values) < 2 else values, dtype=float)


def specialist_decisions(task: str, payload: dict[str, Any]) -> list[np.ndarray]:
    """Probability vectors of a specialist prediction (contract shapes of issue 12).

    C2: one vector per step (its ``top`` ops); C6: the answer-type distribution and the answer
    step's probability; C3: each operand's probability; C5: each edge's; C4: each constant's.
    """
    rows: list[np.ndarray] = []
    if task == "C2":
        for step in payload.get("steps") or []:
            vector = _top_vector(step.get("top"), step.get("p"))
            if vector is not None:
                rows.append(vector if len(vector) >= 2 else binary_distribution([vector[0]])[0])
    elif task == "C6":
        type_probs = payload.get("type_probs") or {}
        if isinstance(type_probs, dict) and len(type_probs) >= 2:
            rows.append(np.asarray([float(v) for v in type_probs.values()], dtype=float))
        if isinstance(payload.get("p"), (int, float)):
            rows.append(binary_distribution([payload["p"]])[0])
    elif task == "C3":
        for step in payload.get("steps") or []:
            rows.extend(binary_distribution([p])[0] for p in step.get("p") or [] if isinstance(p, (int, float)))
    elif task == "C5":
        rows.extend(binary_distribution([p])[0] for p in (payload.get("p") or {}).values() if isinstance(p, (int, float)))
    elif task == "C4":
        rows.extend(binary_distribution([p])[0] for p in (payload.get("probs") or {}).values()
                    if isinstance(p, (int, float)))
    return rows


def _decisions_from_prediction(payload: dict[str, Any], confidence: float | None) -> list[np.ndarray]:
    probs = payload.get("probs") if isinstance(payload, dict) else None
    rows: list[np.ndarray] = []
    if isinstance(probs, list) and probs:
        matrix = probs if isinstance(probs[0], list) else [probs]
        rows = [np.asarray(row, dtype=float) for row in matrix if isinstance(row, list) and len(row) >= 2]
    if not rows and confidence is not None:
        rows = [binary_distribution([confidence])[0]]
    return rows


def load_candidates(
    session: Session, problem_ids: Iterable[int], noise: dict[int, tuple[float, str]] | None = None
) -> list[Candidate]:
    """Candidates for ``problem_ids`` (bulk queries; one pass per table); ``noise``: :func:`label_noise`."""
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
    newest: dict[tuple[int, str], tuple[dict[str, Any], float | None]] = {}
    for problem_id, task, payload, confidence in session.execute(
        select(Prediction.problem_id, Prediction.task, Prediction.payload, Prediction.confidence)
        .where(Prediction.problem_id.in_(ids))
        .order_by(Prediction.id)
    ):
        newest[(problem_id, str(task))] = (payload, confidence)  # the newest model's prediction per task
    with_model: set[int] = set()
    for (problem_id, task), (payload, confidence) in newest.items():
        rows = specialist_decisions(task, payload) if isinstance(payload, dict) else []
        if task in ("C2", "C6"):  # the decisions a reviewer corrects; C3–C5 add many near-certain binaries
            decisions[problem_id].extend(rows or _decisions_from_prediction(payload, confidence))
        with_model.add(problem_id)
    outcome = model_outcomes(session, ids)
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
    execution.update({pid: (o["failed"], o["error"]) for pid, o in outcome.items() if o["failed"] is not None})
    noise = noise or {}
    return [
        Candidate(
            problem_id=problem_id,
            text=texts[problem_id],
            decisions=tuple(decisions[problem_id]),
            regions=tuple(regions[problem_id]) if problem_id not in with_model else (),
            operands=tuple(operands[problem_id]) if problem_id not in with_model else (),
            execution_failed=execution[problem_id][0] if problem_id in execution else None,
            execution_error=execution[problem_id][1] if problem_id in execution else None,
            candidates_disagree=outcome.get(problem_id, {}).get("disagree"),
            no_program=outcome.get(problem_id, {}).get("no_program"),
            noise=noise.get(problem_id, (None, None))[0],
            noise_detail=noise.get(problem_id, (None, None))[1],
        )
        for problem_id in ids
        if problem_id in texts
    ]


def model_outcomes(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per problem, from its newest ``inference_results`` row: candidates disagree, no program,
    the model's program failed (does not execute, or — train pool, gold known — wrong answer)."""
    rows = session.execute(
        select(InferenceResult.problem_id, InferenceResult.disagreement, InferenceResult.program_id,
               InferenceResult.no_answer_reason, InferenceResult.correct, Program.executes, Program.error)
        .outerjoin(Program, Program.id == InferenceResult.program_id)
        .where(InferenceResult.problem_id.in_(list(ids)))
        .order_by(InferenceResult.id)
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for problem_id, disagree, program_id, reason, correct, executes, error in rows:
        no_program = program_id is None
        if no_program:
            failed, why = None, None  # its own reason, not "wrong"
        elif executes is False:
            failed, why = True, error or "does not execute"
        elif correct is False:
            failed, why = True, "model answer wrong"
        else:
            failed, why = (False if correct else None), None
        out[problem_id] = {"disagree": bool(disagree), "no_program": no_program, "failed": failed,
                           "error": why or (reason if no_program else None)}
    return out


def label_noise(session: Session, ids: Sequence[int], embeddings: np.ndarray, folds: int = 5,
                seed: int = 0) -> dict[int, tuple[float, str]]:
    """Suspected label noise of the live machine C2/C6 labels of ``ids`` (cleanlab, see
    :mod:`labeling.noise`): problem id → (1.0, "C2 p=0.04 …")."""
    from labeling.noise import c2_target, c6_target, find_noise

    live = aliased(Label)
    payloads: dict[tuple[int, str], dict[str, Any]] = {}
    for problem_id, task, payload in session.execute(
        select(live.problem_id, live.task, live.payload)
        .where(live.problem_id.in_(list(ids)), live.task.in_(["C2", "C6"]), live.source != LabelSource.HUMAN,
               _live_label_filter(live))
        .order_by(live.id)
    ):
        payloads[(problem_id, str(task))] = payload
    targets = {
        "C2": [c2_target(payloads.get((pid, "C2"))) for pid in ids],
        "C6": [c6_target(payloads.get((pid, "C6"))) for pid in ids],
    }
    flags = find_noise(embeddings, targets, folds, seed)
    out: dict[int, tuple[float, str]] = {}
    for task, found in flags.flagged.items():
        for index, p in found.items():
            pid = ids[index]
            given = targets[task][index]
            detail = f"{task} label {given} has out-of-sample p={p:.2f}"
            out[pid] = (1.0, f"{out[pid][1]}; {detail}" if pid in out else detail)
    return out
