"""Active-learning rounds: start (select and record a batch), status, close.

One round is open at a time. Starting records the model versions in use and the selection
(problem, strategy, score, reason) — starting again while it is open returns the same round
and the same selection. Closing records the statistics and the model versions after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    Annotation,
    AnnotationAction,
    Label,
    LabelSource,
    ReviewStatus,
    ReviewTask,
    Round,
    RoundStatus,
    Selection,
    SpecialistModel,
    Split,
)
from labeling.candidates import label_noise, load_candidates, pool_problem_ids
from labeling.embeddings import embed_texts
from labeling.selection import DEFAULT_MAX_SIMILARITY, DEFAULT_STRATEGY, STRATEGIES, select_batch

DEFAULT_BUDGET = 50
NO_MODELS = "attention"  # predictions come from attention-derived regions only


class RoundError(RuntimeError):
    """A round operation that cannot be done in the current state."""


def current_models(session: Session) -> dict[str, str]:
    """The newest version of each trained specialist (empty before any training)."""
    rows = session.execute(
        select(SpecialistModel.specialist, SpecialistModel.version).order_by(
            SpecialistModel.specialist, SpecialistModel.created_at, SpecialistModel.id
        )
    ).all()
    return {str(specialist): version for specialist, version in rows}


def model_version_tag(round_number: int, models: dict[str, str]) -> str:
    """The ``model_version`` of a round's predictions, e.g. ``r3-attention`` or ``r4-9f2c1ab0``."""
    if not models:
        return f"r{round_number}-{NO_MODELS}"
    digest = hashlib.sha256(repr(sorted(models.items())).encode()).hexdigest()[:8]
    return f"r{round_number}-{digest}"


def open_round(session: Session) -> Round | None:
    return session.scalar(select(Round).where(Round.status == RoundStatus.OPEN).order_by(Round.number.desc()))


def get_round(session: Session, number: int | None = None) -> Round:
    """Round ``number``, or the open round, or the latest one; raises if there is none."""
    if number is not None:
        found = session.scalar(select(Round).where(Round.number == number))
        if found is None:
            raise RoundError(f"round {number} does not exist")
        return found
    found = open_round(session) or session.scalar(select(Round).order_by(Round.number.desc()))
    if found is None:
        raise RoundError("no rounds yet: run `mycelium round start`")
    return found


@dataclass(frozen=True)
class RoundStart:
    round: Round
    selections: list[Selection]
    created: bool


def start_round(
    session: Session,
    *,
    budget: int | None = None,
    strategy: str | None = None,
    splits: Sequence[Split] = (Split.TRAIN,),
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    seed: int = 0,
    noise: bool = True,
) -> RoundStart:
    """Open a round and record its selection; with a round already open, return it unchanged.

    Asking for a different budget or strategy while a round is open is an error naming it.
    """
    if strategy is not None and strategy not in STRATEGIES:
        raise RoundError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if budget is not None and budget < 1:
        raise RoundError(f"budget must be at least 1, got {budget}")
    existing = open_round(session)
    if existing is not None:
        if (budget is not None and budget != existing.budget) or (
            strategy is not None and strategy != existing.strategy
        ):
            raise RoundError(
                f"round {existing.number} is open (strategy {existing.strategy}, budget {existing.budget}); "
                "close it before starting another"
            )
        return RoundStart(existing, selections_of(session, existing), created=False)
    number = (session.scalar(select(func.max(Round.number))) or 0) + 1
    models = current_models(session)
    round_ = Round(
        number=number,
        status=RoundStatus.OPEN,
        strategy=strategy or DEFAULT_STRATEGY,
        budget=budget or DEFAULT_BUDGET,
        model_version=model_version_tag(number, models),
        models_before=models,
        stats={},
    )
    session.add(round_)
    session.flush()
    pool = pool_problem_ids(session, splits)
    candidates = load_candidates(session, pool)
    embeddings = embed_texts([c.text for c in candidates])
    if noise and round_.strategy != "random" and candidates:
        ids = [c.problem_id for c in candidates]
        candidates = load_candidates(session, ids, noise=label_noise(session, ids, embeddings, seed=seed))
    chosen = select_batch(
        candidates, round_.budget, round_.strategy, max_similarity=max_similarity, seed=seed, embeddings=embeddings
    )
    for scored in chosen:
        session.add(
            Selection(
                round_id=round_.id,
                problem_id=scored.problem_id,
                strategy=round_.strategy,
                score=scored.priority,
                reason=scored.reason,
            )
        )
    session.flush()
    round_.stats = {
        "pool": len(pool),
        "splits": [str(s) for s in splits],
        "components": {str(c.problem_id): {k: v for k, v in c.components.items() if v == v} for c in chosen},
        **round_stats(session, round_),
    }
    return RoundStart(round_, selections_of(session, round_), created=True)


def selections_of(session: Session, round_: Round) -> list[Selection]:
    """The round's selections, most uncertain first."""
    return list(
        session.scalars(
            select(Selection)
            .where(Selection.round_id == round_.id)
            .order_by(Selection.score.desc(), Selection.problem_id)
        )
    )


def round_stats(session: Session, round_: Round) -> dict[str, Any]:
    """Selected, sent, annotated, imported counts (and label rows) of a round."""

    def count(query: Any) -> int:
        return int(session.scalar(query) or 0)

    annotated_tasks = count(
        select(func.count(func.distinct(Annotation.review_task_id)))
        .join(ReviewTask, ReviewTask.id == Annotation.review_task_id)
        .where(ReviewTask.round_id == round_.id, Annotation.action != AnnotationAction.DELETED)
    )
    statuses = dict(
        session.execute(
            select(ReviewTask.status, func.count()).where(ReviewTask.round_id == round_.id).group_by(ReviewTask.status)
        ).all()
    )
    human = (Label.round_id == round_.id) & (Label.source == LabelSource.HUMAN)
    return {
        "selected": count(select(func.count()).select_from(Selection).where(Selection.round_id == round_.id)),
        "sent": count(select(func.count()).select_from(ReviewTask).where(ReviewTask.round_id == round_.id)),
        "annotated": annotated_tasks,
        "imported": int(statuses.get(ReviewStatus.IMPORTED, 0)),
        "withdrawn": int(statuses.get(ReviewStatus.WITHDRAWN, 0)),
        "annotation_versions": count(
            select(func.count())
            .select_from(Annotation)
            .join(ReviewTask, ReviewTask.id == Annotation.review_task_id)
            .where(ReviewTask.round_id == round_.id)
        ),
        "human_labels": count(select(func.count()).select_from(Label).where(human, Label.is_withdrawal.is_(False))),
        "withdrawals": count(select(func.count()).select_from(Label).where(human, Label.is_withdrawal.is_(True))),
    }


def refresh_stats(session: Session, round_: Round) -> dict[str, Any]:
    """Recompute and store the round's statistics."""
    round_.stats = {**(round_.stats or {}), **round_stats(session, round_)}
    return round_.stats


def close_round(session: Session, number: int | None = None, *, retrain: bool = False,
                config: Any = None) -> Round:
    """Close the open round (or round ``number``): final stats and the models after it.

    With ``retrain`` the train labels are snapshotted and a ``train`` job is submitted to the
    workers (see :mod:`labeling.retrain`; ``models_after`` is filled when training finished).
    Without, ``models_after`` is the newest version of each specialist now.
    """
    round_ = get_round(session, number)
    if round_.status == RoundStatus.CLOSED:
        return round_
    refresh_stats(session, round_)
    round_.models_after = current_models(session)
    round_.status = RoundStatus.CLOSED
    round_.closed_at = datetime.now(UTC)
    if retrain:
        from labeling.retrain import RetrainConfig, queued_submit, start_retrain

        start_retrain(session, round_, config or RetrainConfig(), queued_submit)
    return round_


def round_summary(session: Session, round_: Round) -> dict[str, Any]:
    """A JSON-ready description of a round (``mycelium round status --json``).

    ``retrain``: the snapshot, jobs, dev/test accuracy before/after, labels added, reviewer time
    and the stopping rule (see :mod:`labeling.retrain`).
    """
    stats = {**(round_.stats or {}), **round_stats(session, round_)}
    retrain = stats.pop("retrain", None)
    stats.pop("components", None)
    return {
        "number": round_.number,
        "status": str(round_.status),
        "strategy": round_.strategy,
        "budget": round_.budget,
        "model_version": round_.model_version,
        "models_before": round_.models_before,
        "models_after": round_.models_after,
        "started_at": round_.started_at.isoformat() if round_.started_at else None,
        "closed_at": round_.closed_at.isoformat() if round_.closed_at else None,
        "stats": stats,
        "retrain": retrain,
    }


def latest_verdicts(session: Session, round_: Round) -> dict[int, dict[str, Any]]:
    """Per review task id of the round: the execution verdict of its newest live annotation.

    ``{"status": "reproduces_gold" | "wrong_answer" | "does_not_execute" | "no_program", "answer",
    "gold", "trained_on": bool, ...}``; tasks whose annotation carried no program are absent.
    A verdict other than ``reproduces_gold`` is flagged: its labels stay out of training snapshots.
    """
    rows = session.execute(
        select(Annotation.review_task_id, Annotation.verdict, Annotation.action)
        .join(ReviewTask, ReviewTask.id == Annotation.review_task_id)
        .where(ReviewTask.round_id == round_.id)
        .order_by(Annotation.review_task_id, Annotation.ls_updated_at)
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for task_id, verdict, action in rows:
        if action == AnnotationAction.DELETED:
            out.pop(task_id, None)
        elif verdict:
            out[task_id] = {**verdict, "trained_on": bool(verdict.get("correct"))}
    return out
