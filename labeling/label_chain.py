"""Append-only label history for human review: supersede, withdraw, reinstate.

The live label of a (problem, task) is the newest row that no row supersedes and that is not a
withdrawal (the ``current_labels`` view). A human label supersedes whatever is live; the rows
it displaced stay in history. Withdrawing an annotation's label appends a withdrawal row and
reinstates — as a fresh copy, nothing is edited — the labels that annotation had displaced, so
the problem falls back to what it had before the review.

Every row written here carries ``annotation_id`` (the imported annotation version that caused
it); that link is how an annotation's labels and the labels it displaced are found again.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from app.db.models import Annotation, AnnotationAction, Label, LabelSource, LabelTask

_PROBLEM_LOCK_NAMESPACE = 0x6D79  # "my"


def lock_problem(session: Session, problem_id: int) -> None:
    """Serialise label changes of one problem until the transaction ends."""
    session.execute(select(func.pg_advisory_xact_lock(_PROBLEM_LOCK_NAMESPACE, problem_id)))


def live_labels(session: Session, problem_id: int, task: LabelTask) -> list[Label]:
    """Live (current) labels of a (problem, task), newest first."""
    superseding = aliased(Label)
    return list(
        session.scalars(
            select(Label)
            .where(
                Label.problem_id == problem_id,
                Label.task == task,
                Label.is_withdrawal.is_(False),
                ~exists().where(superseding.supersedes_id == Label.id),
            )
            .order_by(Label.id.desc())
        )
    )


def annotation_row_ids(session: Session, ls_annotation_id: int) -> list[int]:
    """Ids of every imported version of a Label Studio annotation."""
    return list(session.scalars(select(Annotation.id).where(Annotation.ls_annotation_id == ls_annotation_id)))


def is_deleted(session: Session, ls_annotation_id: int) -> bool:
    """True once a deletion of the annotation has been imported."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Annotation)
            .where(Annotation.ls_annotation_id == ls_annotation_id, Annotation.action == AnnotationAction.DELETED)
        )
        > 0
    )


def _append(session: Session, **fields: Any) -> Label:
    return _save(session, Label(**fields))


def _save(session: Session, label: Label) -> Label:
    session.add(label)
    session.flush()
    return label


def supersede_with_human(
    session: Session,
    *,
    problem_id: int,
    task: LabelTask,
    payload: dict[str, Any],
    confidence: float,
    round_id: int | None,
    annotation_row_id: int,
) -> Label:
    """Append a human label that supersedes the live label(s) of (problem, task).

    The newest live label is superseded by the human row itself; older live rows (parallel
    machine labels) are retired by withdrawal rows, so exactly one label is live afterwards.
    """
    live = live_labels(session, problem_id, task)
    human = _append(
        session,
        problem_id=problem_id,
        task=task,
        payload=payload,
        source=LabelSource.HUMAN,
        confidence=confidence,
        round_id=round_id,
        annotation_id=annotation_row_id,
        supersedes_id=live[0].id if live else None,
    )
    for older in live[1:]:
        _append(
            session,
            problem_id=problem_id,
            task=task,
            payload={"reason": "superseded by human label", "label_id": human.id},
            source=LabelSource.HUMAN,
            confidence=None,
            round_id=round_id,
            annotation_id=annotation_row_id,
            supersedes_id=older.id,
            is_withdrawal=True,
        )
    return human


def live_label_of_annotation(
    session: Session, problem_id: int, task: LabelTask, annotation_rows: Collection[int]
) -> Label | None:
    """The live label of (problem, task) if it came from one of ``annotation_rows``."""
    for label in live_labels(session, problem_id, task):
        if label.annotation_id in annotation_rows:
            return label
    return None


def displaced_labels(
    session: Session, problem_id: int, task: LabelTask, annotation_rows: Collection[int]
) -> list[Label]:
    """Labels from *outside* the annotation that its rows superseded (what it replaced)."""
    if not annotation_rows:
        return []
    caused = aliased(Label)
    return list(
        session.scalars(
            select(Label)
            .join(caused, caused.supersedes_id == Label.id)
            .where(
                Label.problem_id == problem_id,
                Label.task == task,
                caused.annotation_id.in_(annotation_rows),
                Label.annotation_id.is_(None) | Label.annotation_id.not_in(annotation_rows),
                Label.is_withdrawal.is_(False),
            )
            .order_by(Label.id)
            .distinct()
        )
    )


def _reinstatable(session: Session, label: Label) -> bool:
    """A displaced label comes back unless it came from an annotation deleted meanwhile."""
    if label.annotation_id is None:
        return True
    ls_id = session.scalar(select(Annotation.ls_annotation_id).where(Annotation.id == label.annotation_id))
    return ls_id is None or not is_deleted(session, ls_id)


def _distinct_contents(labels: list[Label]) -> list[Label]:
    """The newest label per content: a label displaced, reinstated and displaced again counts once."""
    newest: dict[str, Label] = {}
    for label in sorted(labels, key=lambda item: item.id):
        key = json.dumps(
            [str(label.source), label.payload, label.trace_id, label.model_id, label.annotation_id], sort_keys=True
        )
        newest[key] = label
    return sorted(newest.values(), key=lambda item: item.id)


def withdraw(
    session: Session,
    *,
    problem_id: int,
    task: LabelTask,
    ls_annotation_id: int,
    round_id: int | None,
    annotation_row_id: int,
    reason: str,
) -> list[Label]:
    """Withdraw the annotation's live label for (problem, task) and reinstate what it displaced.

    Returns the rows appended (empty if the annotation has no live label for the task).
    """
    rows = set(annotation_row_ids(session, ls_annotation_id))
    live = live_label_of_annotation(session, problem_id, task, rows)
    if live is None:
        return []
    withdrawal = _append(
        session,
        problem_id=problem_id,
        task=task,
        payload={"reason": reason, "label_id": live.id, "ls_annotation_id": ls_annotation_id},
        source=LabelSource.HUMAN,
        confidence=None,
        round_id=round_id,
        annotation_id=annotation_row_id,
        supersedes_id=live.id,
        is_withdrawal=True,
    )
    appended = [withdrawal]
    for previous in _distinct_contents(displaced_labels(session, problem_id, task, rows)):
        if not _reinstatable(session, previous):
            continue
        appended.append(_save(session, previous.copy_with(supersedes_id=withdrawal.id)))
    return appended
