"""Evaluation shell against the real Postgres: gold-blind by construction, contamination guard,
stored rows, CLI. Specialists are hand-made (tests/inference_helpers.py); the same tests with tiny
trained specialists live in test_evaluation_trained.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text, update

from app.db.models import (
    InferenceResult, LabelSnapshot, LabelTask, Prediction, Problem, Program, ProgramSource, SpecialistModel, Split,
)
from app.evaluation import ContaminationError, evaluate
from tests.conftest import FIXTURES
from tests.inference_helpers import NATALIA, FakeSpecialists, natalia

VERSION = "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"


def _setup(session, trained_on: list[int] | None = None) -> list[int]:
    """Fixture GSM8K problems as split test, reference programs, models rows C1..C6 v1."""
    from app.ingest import ingest_file
    from app.validation import validate_reference

    ingest_file(session, FIXTURES / "gsm8k_sample.jsonl", "gsm8k", split=Split.TEST)
    session.flush()
    problems = list(session.scalars(select(Problem).order_by(Problem.id)))
    for problem in problems[:20]:
        validate_reference(session, problem)
    snapshot = LabelSnapshot(split=Split.TRAIN, content_hash="s" * 64, counts={}, label_ids=[],
                             problem_ids=trained_on or [])
    session.add(snapshot)
    session.flush()
    for task in LabelTask:
        session.add(SpecialistModel(specialist=task, version="v1", backbone="hand-made", snapshot_id=snapshot.id,
                                    snapshot_hash=snapshot.content_hash, config_hash=f"c{task.value}"))
    session.commit()
    return [p.id for p in problems]


def _dump(session) -> str:
    """Everything inference wrote, canonical JSON, without wall times and row ids."""
    results = [{"problem": r.problem_id, "answer": r.answer, "p": r.probability, "paths": r.paths_explored,
                "disagreement": r.disagreement, "candidates": r.candidates, "reason": r.no_answer_reason,
                "program": session.get(Program, r.program_id).steps if r.program_id else None}
               for r in session.scalars(select(InferenceResult).order_by(InferenceResult.problem_id))]
    predictions = [{"problem": p.problem_id, "task": str(p.task), "payload": p.payload, "confidence": p.confidence}
                   for p in session.scalars(select(Prediction).order_by(Prediction.problem_id, Prediction.task))]
    return json.dumps({"results": results, "predictions": predictions}, sort_keys=True)


def test_predictions_are_byte_identical_after_corrupting_every_gold(db_session):
    ids = _setup(db_session)
    db_session.execute(update(Problem).where(Problem.id == ids[0]).values(text=NATALIA))
    db_session.commit()
    specialists = FakeSpecialists({NATALIA: natalia()})
    report, rows = evaluate(db_session, specialists, ids)
    before = _dump(db_session)
    assert report["n"] == 60 and report["model_version"] == VERSION and report["solved_now"] == 60
    assert rows[0].answer == "72"
    assert db_session.scalar(select(Program).where(Program.source == ProgramSource.MODEL,
                                                   Program.problem_id == ids[0])).model_id is not None

    corrupted = db_session.execute(update(Problem).values(gold_answer="-123456789", gold_solution="corrupt #### 0"))
    assert corrupted.rowcount == 60
    references = db_session.execute(update(Program).where(Program.source == ProgramSource.REFERENCE)
                                    .values(answer="-1", steps={"steps": [], "answer_step": None}))
    assert references.rowcount == 20
    db_session.commit()

    again, _ = evaluate(db_session, specialists, ids, recompute=True)
    assert again["solved_now"] == 60
    assert _dump(db_session) == before
    assert again["accuracy"] == 0.0  # scoring does read gold — afterwards
    assert db_session.scalar(select(text("count(*)")).select_from(Program).where(
        Program.source == ProgramSource.MODEL)) == sum(1 for r in rows if r.answer is not None)


def test_stored_answers_are_reused_without_recompute(db_session):
    ids = _setup(db_session)
    evaluate(db_session, FakeSpecialists(), ids[:10])
    report, _ = evaluate(db_session, FakeSpecialists(), ids[:10])
    assert report["solved_now"] == 0 and report["n"] == 10


def test_contamination_guard_refuses_and_writes_nothing(db_session):
    ids = _setup(db_session)
    db_session.execute(update(LabelSnapshot).values(problem_ids=[ids[3], 999999]))
    db_session.commit()
    with pytest.raises(ContaminationError, match=f"problem {ids[3]}.*nothing was written"):
        evaluate(db_session, FakeSpecialists(), ids)
    db_session.rollback()
    assert db_session.scalar(select(text("count(*)")).select_from(InferenceResult)) == 0
    assert db_session.scalar(select(text("count(*)")).select_from(Prediction)) == 0
    assert db_session.scalar(select(text("count(*)")).select_from(Program).where(
        Program.source == ProgramSource.MODEL)) == 0
    # Problems outside the snapshot evaluate fine.
    report, _ = evaluate(db_session, FakeSpecialists(), [i for i in ids if i != ids[3]])
    assert report["n"] == 59


def test_cli_evaluate_json_predictions_file_and_guard(db_session, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import app.inference.cli as inference_cli
    from app.cli import app

    ids = _setup(db_session)
    monkeypatch.setattr(inference_cli, "load_specialists_or_fail", lambda session, version: FakeSpecialists())
    out = tmp_path / "predictions.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--dataset", "gsm8k", "--split", "test", "--json",
                                 "--predictions", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"n", "accuracy", "correct_in_beam", "ms_per_problem", "model_version"} <= set(figures)
    assert figures["n"] == 60
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 60 and set(lines[0]) >= {"external_id", "answer", "probability", "correct"}

    # A FILE whose problems are stored in another split is refused, nothing written.
    db_session.execute(update(Problem).where(Problem.id == ids[0]).values(split=Split.TRAIN))
    db_session.commit()
    result = runner.invoke(app, ["evaluate", str(FIXTURES / "gsm8k_sample.jsonl"), "--dataset", "gsm8k"])
    assert result.exit_code != 0 and "another split" in result.output
    assert "Traceback" not in result.output

    # Contaminated: one line, non-zero exit.
    db_session.execute(update(LabelSnapshot).values(problem_ids=[ids[5]]))
    db_session.commit()
    result = runner.invoke(app, ["evaluate", "--dataset", "gsm8k", "--split", "test", "--recompute"])
    assert result.exit_code != 0 and "refusing to evaluate" in result.output


def test_cli_solve_prints_steps_with_their_text(db_session, monkeypatch):
    from typer.testing import CliRunner

    import app.inference.cli as inference_cli
    from app.cli import app

    monkeypatch.setattr(inference_cli, "load_specialists_or_fail",
                        lambda session, version: FakeSpecialists({NATALIA: natalia()}))
    runner = CliRunner()
    result = runner.invoke(app, ["solve", NATALIA])
    assert result.exit_code == 0, result.output
    assert "answer: 72" in result.output
    assert '"half", chars 68–72, read as 1/x' in result.output
    result = runner.invoke(app, ["solve", NATALIA, "--json"])
    data = json.loads(result.stdout)
    assert data["answer"] == "72" and data["program"]["steps"][1]["text"] == "48+24=72"
    result = runner.invoke(app, ["solve", "What is the capital of France?"])
    assert result.exit_code == 1 and "no answer" in result.output and "no numbers" in result.output


def test_evaluate_job_kind_infers_and_scores(db_session, monkeypatch):
    import workers.evaluation as evaluation_kind
    from workers.kinds import get_kind

    ids = _setup(db_session)
    monkeypatch.setattr(evaluation_kind, "_specialists", lambda version: FakeSpecialists())
    kind = get_kind("evaluate")
    assert kind.queue == "cpu"
    missing = kind.process(db_session, {"model_version": VERSION}, [str(i) for i in ids[:5]] + ["999999"])
    db_session.commit()
    assert missing == {"999999": "no such problem"}
    rows = list(db_session.scalars(select(InferenceResult)))
    assert len(rows) == 5 and all(r.correct is not None and r.in_beam is not None for r in rows)


def test_with_a_selector_predictions_stay_byte_identical_after_corrupting_gold(db_session):
    """The fitted selector is an artifact loaded with the models: still nothing reads gold."""
    from app.inference.selector import FEATURES, Selector
    from app.inference.solve import WithSelector

    ids = _setup(db_session)
    db_session.execute(update(Problem).where(Problem.id == ids[0]).values(text=NATALIA))
    db_session.commit()
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("is_integer")], weights[FEATURES.index("log_mass")] = 2.0, 1.0
    selector = Selector(FEATURES, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), tuple(weights), "5e" * 32)
    specialists = WithSelector(FakeSpecialists({NATALIA: natalia()}), selector)
    report, rows = evaluate(db_session, specialists, ids)
    assert report["model_version"] == VERSION + ".S5e5e5e5e" and rows[0].answer == "72"
    assert db_session.scalar(select(InferenceResult.model_version).where(
        InferenceResult.problem_id == ids[0])) == VERSION + ".S5e5e5e5e"
    before = _dump(db_session)
    db_session.execute(update(Problem).values(gold_answer="-123456789", gold_solution="corrupt #### 0"))
    db_session.execute(update(Program).where(Program.source == ProgramSource.REFERENCE)
                       .values(answer="-1", steps={"steps": [], "answer_step": None}))
    db_session.commit()
    again, _ = evaluate(db_session, specialists, ids, recompute=True)
    assert _dump(db_session) == before and again["accuracy"] == 0.0
