"""Import verified by execution: a reviewer's program text is parsed, executed, stored, and its
C1–C6 human labels are derived exactly as machine labels are (real Postgres, no Label Studio)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db.models import Annotation, Label, LabelSource, Problem, Program, ProgramSource, ReviewStatus, ReviewTask
from app.labels.snapshot import current_split_labels
from labeling.client import AnnotationVersion
from labeling.importer import import_annotation
from labeling.program_text import render_program, verify_program_text
from labeling.rounds import start_round
from tests.labeling_seed import SEED, seed_problems

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LS_TASK = 7001
NATALIA = SEED[0].text


def _setup(session: Session) -> ReviewTask:
    seed_problems(session)
    session.get(Problem, 1).gold_answer = "72"  # type: ignore[union-attr]
    started = start_round(session, budget=5)
    review = ReviewTask(
        round_id=started.round.id, problem_id=1, ls_project_id=1, ls_task_id=LS_TASK, task_score=0.1,
        model_version=started.round.model_version, status=ReviewStatus.PUSHED,
    )
    session.add(review)
    session.commit()
    return review


def _program(lines: str) -> dict[str, Any]:
    return {"from_name": "program", "to_name": "text", "type": "textarea", "value": {"text": [lines]}}


def _span(phrase: str, label: str) -> dict[str, Any]:
    start = NATALIA.index(phrase)
    return {"id": label + phrase[:3], "from_name": "span", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": start + len(phrase), "text": phrase, "labels": [label]}}


def _version(annotation_id: int, minutes: int, result: list[dict[str, Any]]) -> AnnotationVersion:
    return AnnotationVersion(id=annotation_id, task_id=LS_TASK, updated_at=T0 + timedelta(minutes=minutes),
                             result=result, annotator="ls-user:1", was_cancelled=False, lead_time_s=42.5)


def _live(session: Session, task: str) -> list[tuple[str, dict[str, Any], int | None]]:
    session.expire_all()
    rows = session.execute(
        text("SELECT c.source::text, c.payload, l.program_id FROM current_labels c JOIN labels l ON l.id = c.id "
             "WHERE c.problem_id = 1 AND c.task = :t"), {"t": task}).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_program_text_round_trips_through_the_parser() -> None:
    verdict = verify_program_text(NATALIA, "48 / 2 = 24\n48 + 24 = 72", "72")
    assert verdict.status == "reproduces_gold" and verdict.answer == "72" and verdict.n_steps == 2
    assert render_program(verdict.program) == "48 / 2 = 24\n48 + 24 = 72"
    assert verify_program_text(NATALIA, "48 * 2 = 96\n48 + 96 = 144", "72").status == "wrong_answer"
    assert verify_program_text(NATALIA, "I think it is seventy-two", "72").status == "no_program"


def test_a_verified_correction_becomes_c1_to_c6_human_labels(db_session: Session) -> None:
    _setup(db_session)
    result = [_program("48 / 2 = 24\n48 + 24 = 72"), _span("she sold half as many clips in May", "DIV")]
    outcome = import_annotation(db_session, _version(11, 0, result))
    db_session.commit()
    assert outcome.status == "imported"
    row = db_session.scalars(select(Annotation).where(Annotation.ls_annotation_id == 11)).one()
    assert row.program_text == "48 / 2 = 24\n48 + 24 = 72" and row.lead_time_s == 42.5
    assert row.verdict is not None and row.verdict["status"] == "reproduces_gold" and row.verdict["correct"] is True
    program = db_session.get(Program, row.verdict["program_id"])
    assert program is not None and program.source == ProgramSource.HUMAN and program.correct and program.answer == "72"
    [(source, c3, program_id)] = _live(db_session, "C3")
    assert source == "human" and program_id == program.id
    first = c3["steps"][0]
    assert first["op"] == "DIV" and first["operands"][0] == {
        "kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"}
    assert _live(db_session, "C5")[0][1] == {"n_steps": 2, "edges": [[1, 2]]}
    assert _live(db_session, "C6")[0][1] == {"answer_step": 2, "n_steps": 2, "answer_type": "integer"}
    c2 = _live(db_session, "C2")[0][1]
    start = NATALIA.index("she sold half")
    assert c2["steps"][0]["region"] == [start, start + len("she sold half as many clips in May")]  # the reviewer's span
    # the machine C1 label it superseded stays in history
    human_c1 = db_session.scalars(select(Label).where(Label.problem_id == 1, Label.task == "C1",
                                                      Label.source == LabelSource.HUMAN)).one()
    assert human_c1.supersedes_id is not None
    assert {r.task for r in current_split_labels(db_session, "train") if r.problem_id == 1} >= {"C1", "C3", "C6"}


def test_a_correction_that_misses_gold_is_kept_but_left_out_of_snapshots(db_session: Session) -> None:
    _setup(db_session)
    import_annotation(db_session, _version(12, 0, [_program("48 * 2 = 96\n48 + 96 = 144")]))
    db_session.commit()
    row = db_session.scalars(select(Annotation).where(Annotation.ls_annotation_id == 12)).one()
    assert row.verdict["status"] == "wrong_answer" and row.verdict["answer"] == "144"  # type: ignore[index]
    assert [s for s, _, _ in _live(db_session, "C3")] == ["human"]  # kept as the live label …
    assert not [r for r in current_split_labels(db_session, "train") if r.problem_id == 1]  # … but not trained on
    assert [r.task for r in current_split_labels(db_session, "train", include_unverified=True)
            if r.problem_id == 1]


def test_unparseable_program_is_its_own_verdict_and_keeps_span_labels(db_session: Session) -> None:
    _setup(db_session)
    import_annotation(db_session, _version(13, 0, [_program("no idea"), _span("48", "ADD")]))
    db_session.commit()
    row = db_session.scalars(select(Annotation).where(Annotation.ls_annotation_id == 13)).one()
    assert row.verdict["status"] == "no_program" and row.verdict["program_id"] is None  # type: ignore[index]
    assert _live(db_session, "C1")[0][0] == "human"
    assert _live(db_session, "C3") == []
