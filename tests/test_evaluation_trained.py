"""Gold-blindness and the contamination guard with tiny *trained* specialists (tiny random encoder)."""

from __future__ import annotations


import pytest
from sqlalchemy import select, text, update

from app.db.models import InferenceResult, Label, LabelSnapshot, Prediction, Problem, Program, ProgramSource, Split
from app.evaluation import ContaminationError, evaluate
from app.inference.solve import solve
from tests.inference_helpers import NATALIA
from tests.test_evaluation_gold_blind import _dump


def test_trained_specialists_gold_corruption_and_guard(db_session, trained):
    snapshot = db_session.scalar(select(LabelSnapshot))
    trained_on = set(snapshot.problem_ids)
    held_out = list(db_session.scalars(select(Problem.id).where(Problem.split != Split.TRAIN).order_by(Problem.id)))
    train_ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))
    assert held_out and trained_on and not trained_on & set(held_out)

    # The guard: any problem of the models' training snapshot is refused, nothing written.
    with pytest.raises(ContaminationError, match="nothing was written"):
        evaluate(db_session, trained, held_out + train_ids[:1])
    db_session.rollback()
    for table in (InferenceResult, Prediction):
        assert db_session.scalar(select(text("count(*)")).select_from(table)) == 0

    report, rows = evaluate(db_session, trained, held_out)
    assert report["n"] == len(held_out) and report["model_version"] == "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"
    assert all(r.paths_explored >= 0 for r in rows)
    assert db_session.scalar(select(text("count(*)")).select_from(Prediction)) == 6 * len(held_out)
    before = _dump(db_session)

    # Corrupt every gold answer, reference solution, reference program and label payload.
    db_session.execute(update(Problem).values(gold_answer="-987654321", gold_solution="nonsense #### -1"))
    db_session.execute(update(Program).where(Program.source == ProgramSource.REFERENCE)
                       .values(answer="-1", steps={"steps": [], "answer_step": None}))
    db_session.execute(update(Label).values(payload={"corrupt": True}))
    db_session.commit()
    evaluate(db_session, trained, held_out, recompute=True)
    assert _dump(db_session) == before

    natalia, no_numbers = solve([NATALIA, "What colour is the sky?"], trained)
    assert natalia.paths_explored >= 1 and natalia.model_version == trained.model_version
    assert natalia.answer is None or natalia.program["steps"]
    assert no_numbers.answer is None and "no numbers" in no_numbers.no_answer_reason
