"""Execution validation shell: programs and verdicts stored once; a correct trace promotes its labels."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select, text
from typer.testing import CliRunner

from app.cli import app
from app.db.models import Label, LabelSource, Problem, Program, ProgramSource, Trace
from app.db.session import session_factory
from app.ingest import ingest_file
from app.teacher.loading import load_teacher
from app.teacher.persist import extract_problems
from app.teacher.run import ExtractionConfig
from app.teacher.tiny import build_tiny_teacher
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"


def test_validate_stores_programs_once_and_promotes_correct_traces(db_session, tmp_path: Path) -> None:
    ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    ids = list(db_session.scalars(select(Problem.id).order_by(Problem.id).limit(4)))
    teacher_dir = build_tiny_teacher(tmp_path / "teacher", [db_session.get(Problem, i).gold_solution for i in ids])
    teacher = load_teacher(str(teacher_dir), dtype="float32", device="cpu")
    extract_problems(session_factory(), ids, teacher, ExtractionConfig(mode="forced"))

    runner = CliRunner()
    first = runner.invoke(app, ["validate", "--dataset", "gsm8k", "--limit", "4", "--json"])
    assert first.exit_code == 0, first.output
    # Forced mode reads the reference solution, so every trace's program is the reference one.
    assert json.loads(first.stdout) == {"reference_correct": 4, "trace_correct": 4}

    natalia = db_session.scalar(select(Program).where(Program.problem_id == ids[0], Program.source == ProgramSource.REFERENCE))
    assert (natalia.answer, natalia.executes, natalia.correct, natalia.error) == ("72", True, True, None)
    ops = [step["op"] for step in natalia.steps["steps"]]
    assert ops == ["DIV", "ADD"]
    assert natalia.steps["steps"][1]["operands"][1] == {"kind": "step", "ref": natalia.steps["steps"][0]["id"]}

    promoted = db_session.scalars(select(Label).where(Label.source == LabelSource.EXECUTION)).all()
    assert len(promoted) == 4
    for label in promoted:
        teacher_label = db_session.get(Label, label.supersedes_id)
        assert teacher_label.source == LabelSource.TEACHER and teacher_label.payload == label.payload
    current = db_session.execute(text("SELECT DISTINCT source::text FROM current_labels")).scalars().all()
    assert current == ["execution"]

    again = runner.invoke(app, ["validate", "--dataset", "gsm8k", "--limit", "4", "--json"])
    assert json.loads(again.stdout) == {"reference_skipped": 4, "trace_skipped": 4}
    assert db_session.scalar(select(func.count()).select_from(Program)) == 8
    assert db_session.scalar(select(func.count()).select_from(Label)) == 8
    assert db_session.scalar(select(func.count()).select_from(Trace)) == 4
