"""Importer and label history on Postgres: supersede, withdraw, reinstate, out-of-order versions.

These feed annotation versions straight to the importer (the shape both the webhook and the
reconciliation hand it); the Label Studio round trip itself is in test_labeling_review.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.db.models import Annotation, Label, LabelSource, LabelTask, ReviewStatus, ReviewTask
from labeling.client import AnnotationVersion
from labeling.importer import import_annotation, import_deletion
from labeling.review_labels import ReviewResultError
from labeling.rounds import start_round
from tests.labeling_seed import SEED, seed_problems

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LS_TASK = 9001


def _setup(session: Session) -> ReviewTask:
    """Seed, open a round, and register one review task for problem 1 (as a push would)."""
    seed_problems(session)
    started = start_round(session, budget=5)
    session.add(
        Label(
            problem_id=1,
            task=LabelTask.C6,
            source=LabelSource.EXECUTION,
            confidence=0.8,
            payload={"answer_type": "decimal"},
        )
    )
    review = ReviewTask(
        round_id=started.round.id,
        problem_id=1,
        ls_project_id=1,
        ls_task_id=LS_TASK,
        task_score=0.1,
        model_version=started.round.model_version,
        status=ReviewStatus.PUSHED,
    )
    session.add(review)
    session.commit()
    return review


def _version(
    annotation_id: int, minutes: int, result: list[dict[str, Any]], cancelled: bool = False
) -> AnnotationVersion:
    return AnnotationVersion(
        id=annotation_id,
        task_id=LS_TASK,
        updated_at=T0 + timedelta(minutes=minutes),
        result=result,
        annotator="ls-user:1",
        was_cancelled=cancelled,
    )


def _answer(value: str) -> dict[str, Any]:
    return {"from_name": "answer_type", "to_name": "text", "type": "choices", "value": {"choices": [value]}}


def _span(phrase: str, label: str = "ADD") -> dict[str, Any]:
    start = SEED[0].text.index(phrase)
    return {
        "from_name": "span",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(phrase), "labels": [label]},
    }


def _live(session: Session, task: str) -> list[tuple[str, dict[str, Any]]]:
    session.expire_all()
    rows = session.execute(
        text("SELECT source::text, payload FROM current_labels WHERE problem_id = 1 AND task = :t ORDER BY id"),
        {"t": task},
    ).all()
    return [(row[0], row[1]) for row in rows]


def test_clearing_and_restoring_the_answer_type(db_session: Session) -> None:
    _setup(db_session)
    outcome = import_annotation(db_session, _version(1, 0, [_span("48"), _answer("integer")]))
    assert outcome.status == "imported"
    assert _live(db_session, "C6") == [("human", {"answer_type": "integer"})]

    import_annotation(db_session, _version(1, 1, [_span("48")]))  # answer type cleared
    assert _live(db_session, "C6") == [("execution", {"answer_type": "decimal"})]

    import_annotation(db_session, _version(1, 2, [_span("48"), _answer("fraction")]))
    assert _live(db_session, "C6") == [("human", {"answer_type": "fraction"})]

    import_deletion(db_session, 1)
    db_session.commit()
    assert _live(db_session, "C6") == [("execution", {"answer_type": "decimal"})]  # back exactly once
    region = "she sold half as many clips in May"
    start = SEED[0].text.index(region)
    assert _live(db_session, "C1") == [("teacher", {"regions": [{"start": start, "end": start + 34, "text": region}]})]
    assert import_deletion(db_session, 1).status == "duplicate"
    assert import_annotation(db_session, _version(1, 3, [_answer("integer")])).status == "after_delete"
    history = db_session.scalar(select(func.count()).select_from(Label).where(Label.task == LabelTask.C6))
    assert history == 1 + 1 + 2 + 1 + 2  # machine, human, withdraw+restore, human, withdraw+restore


def test_versions_are_idempotent_and_order_safe(db_session: Session) -> None:
    _setup(db_session)
    newer = _version(7, 5, [_span("clips", "MUL")])
    older = _version(7, 1, [_span("April", "SUB")])
    assert import_annotation(db_session, newer).status == "imported"
    assert import_annotation(db_session, newer).status == "duplicate"
    assert import_annotation(db_session, older).status == "stale"  # kept as history only
    db_session.commit()
    assert [r[1]["regions"][0]["label"] for r in _live(db_session, "C2")] == ["MUL"]
    assert db_session.scalar(select(func.count()).select_from(Annotation)) == 2


def test_a_second_reviewer_supersedes_the_first_and_their_deletion_falls_back(db_session: Session) -> None:
    _setup(db_session)
    import_annotation(db_session, _version(1, 0, [_answer("integer")]))
    import_annotation(db_session, _version(2, 1, [_answer("fraction")]))
    assert _live(db_session, "C6") == [("human", {"answer_type": "fraction"})]
    import_deletion(db_session, 2)
    assert _live(db_session, "C6") == [("human", {"answer_type": "integer"})]  # reviewer 1's label again
    import_deletion(db_session, 1)
    db_session.commit()
    assert _live(db_session, "C6") == [("execution", {"answer_type": "decimal"})]


def test_cancelled_annotations_and_unknown_tasks_label_nothing(db_session: Session) -> None:
    _setup(db_session)
    assert import_annotation(db_session, _version(3, 0, [], cancelled=True)).status == "cancelled"
    assert _live(db_session, "C1")[0][0] == "teacher"
    stranger = AnnotationVersion(id=4, task_id=12345, updated_at=T0, result=[], annotator=None, was_cancelled=False)
    assert import_annotation(db_session, stranger).status == "unknown_task"
    assert import_deletion(db_session, 999).status == "unknown_annotation"


def test_a_span_outside_the_text_is_rejected_naming_the_records(db_session: Session) -> None:
    _setup(db_session)
    bad = {"from_name": "span", "type": "labels", "value": {"start": 500, "end": 510, "labels": ["ADD"]}}
    with pytest.raises(ReviewResultError, match=r"annotation 5 \(task 9001, problem 1\)"):
        import_annotation(db_session, _version(5, 0, [bad]))
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(Annotation)) == 0
