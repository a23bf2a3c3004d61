"""Label build shell, snapshots and CLI against the real Postgres (fixtures: 60 GSM8K problems)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import app
from app.db.models import Label, LabelSnapshot, LabelSource, LabelTask, Problem, Program, ProgramSource, Split
from app.labels.build import build_labels, label_fixture_file
from app.labels.derive import TASKS
from app.labels.snapshot import create_snapshot
from labeling.label_chain import live_labels, supersede_with_human
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"


def _natalia(session: Session) -> Problem:
    return session.scalar(select(Problem).where(Problem.text.startswith("Natalia sold clips")))


def test_build_labels_every_task_with_provenance_and_is_idempotent(db_session: Session) -> None:
    report = label_fixture_file(db_session, GSM8K, "gsm8k")
    validated = db_session.scalar(select(func.count()).select_from(Program).where(Program.correct.is_(True)))
    assert validated == report["problems"] == report["labelled"] >= 55
    assert report["created"] == {task: validated for task in TASKS} and report["failed"] == 0

    natalia = _natalia(db_session)
    program = db_session.scalar(select(Program).where(Program.problem_id == natalia.id,
                                                       Program.source == ProgramSource.REFERENCE))
    c3 = live_labels(db_session, natalia.id, LabelTask.C3)
    assert len(c3) == 1
    assert (c3[0].source, c3[0].program_id, c3[0].trace_id) == (LabelSource.EXECUTION, program.id, None)
    assert c3[0].payload["steps"][0]["operands"][1] == {
        "kind": "problem", "start": 68, "end": 72, "value": "2", "reading": "reciprocal"}
    assert live_labels(db_session, natalia.id, LabelTask.C5)[0].payload == {"n_steps": 2, "edges": [[1, 2]]}

    again = build_labels(db_session, "gsm8k")
    assert again["created"] == {task: 0 for task in TASKS} and again["up_to_date"] == validated
    rechecked = build_labels(db_session, "gsm8k", recheck=True)
    assert rechecked["created"] == {task: 0 for task in TASKS} and rechecked["unchanged"] == 6 * validated
    assert db_session.scalar(select(func.count()).select_from(Label)) == 6 * validated

    coverage = db_session.execute(text(
        "SELECT task, source, sum(problems)::int FROM label_coverage WHERE dataset = 'gsm8k' "
        "GROUP BY task, source ORDER BY task")).all()
    assert coverage == [(task, "execution", validated) for task in TASKS]


def test_human_label_is_never_superseded_and_changed_programs_supersede_machine_labels(db_session: Session) -> None:
    label_fixture_file(db_session, GSM8K, "gsm8k")
    natalia = _natalia(db_session)
    human_payload = {"steps": [{"step": 1, "op": "MUL", "region": None}]}
    human = supersede_with_human(db_session, problem_id=natalia.id, task=LabelTask.C2, payload=human_payload,
                                 confidence=1.0, round_id=None, annotation_row_id=None)
    # The program is rebuilt (e.g. a grounding fix): machine labels move on, the human one stays.
    program = db_session.scalar(select(Program).where(Program.problem_id == natalia.id))
    steps = json.loads(json.dumps(program.steps))
    steps["steps"][1]["operands"].reverse()
    program.steps = steps
    db_session.commit()

    report = build_labels(db_session, "gsm8k", problem_ids=[natalia.id], recheck=True)
    assert report["human_kept"] == 1
    assert report["created"] == {"C1": 0, "C2": 0, "C3": 1, "C4": 0, "C5": 0, "C6": 0}
    assert [label.id for label in live_labels(db_session, natalia.id, LabelTask.C2)] == [human.id]
    (c3,) = live_labels(db_session, natalia.id, LabelTask.C3)
    assert c3.payload["steps"][1]["operands"][0] == {"kind": "step", "ref": 1}
    assert db_session.get(Label, c3.supersedes_id).source == LabelSource.EXECUTION
    assert build_labels(db_session, "gsm8k")["created"] == {task: 0 for task in TASKS}


def test_malformed_program_is_named_and_the_others_are_still_labelled(db_session: Session) -> None:
    from app.ingest import ingest_file
    from app.validation import validate_reference

    ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    for problem in db_session.scalars(select(Problem).order_by(Problem.id)):
        validate_reference(db_session, problem)
    natalia = _natalia(db_session)
    bad = db_session.scalar(select(Program).where(Program.problem_id == natalia.id))
    bad.steps = {"steps": [{"id": 1, "op": "EVAL", "operands": []}], "answer_step": 1}
    db_session.commit()
    validated = db_session.scalar(select(func.count()).select_from(Program).where(Program.correct.is_(True)))

    result = CliRunner().invoke(app, ["labels", "build", "--dataset", "gsm8k", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout.splitlines()[0])
    assert report["failed"] == 1 and report["labelled"] == validated - 1
    assert report["created"] == {task: validated - 1 for task in TASKS}
    assert f"error: program {bad.id} (problem {natalia.id}): malformed program: " in result.stderr
    assert "unknown op 'EVAL'" in result.stderr and "Traceback" not in result.output
    assert db_session.scalar(select(func.count()).select_from(Label).where(Label.problem_id == natalia.id)) == 0


def test_snapshot_hash_stability_split_guard_and_export(db_session: Session, tmp_path: Path) -> None:
    label_fixture_file(db_session, GSM8K, "gsm8k")
    first, created = create_snapshot(db_session, "train")
    db_session.commit()
    assert created and first.split == Split.TRAIN
    splits = set(db_session.scalars(select(Problem.split).where(Problem.id.in_(first.problem_ids))))
    assert splits == {Split.TRAIN}
    dev_ids = set(db_session.scalars(select(Problem.id).where(Problem.split != Split.TRAIN)))
    assert dev_ids and not dev_ids & set(first.problem_ids)  # labelled, but not in a train snapshot
    assert db_session.scalar(select(func.count()).select_from(Label).where(Label.problem_id.in_(dev_ids))) > 0
    n_train = len(first.problem_ids)
    assert first.counts == {task: {"problems": n_train, "labels": n_train} for task in TASKS}
    assert len(first.label_ids) == 6 * n_train

    # Same labels (a rebuild appends nothing) → same hash → the same row.
    build_labels(db_session, "gsm8k", recheck=True)
    same, created = create_snapshot(db_session, "train")
    assert (same.id, same.content_hash, created) == (first.id, first.content_hash, False)

    # One human correction → a new hash.
    problem_id = first.problem_ids[0]
    supersede_with_human(db_session, problem_id=problem_id, task=LabelTask.C6,
                         payload={"answer_step": 1, "n_steps": 1, "answer_type": "decimal"},
                         confidence=1.0, round_id=None, annotation_row_id=None)
    db_session.commit()
    runner = CliRunner()
    result = runner.invoke(app, ["labels", "snapshot", "--split", "train", "--json"])
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    assert changed["created"] and changed["content_hash"] != first.content_hash
    assert changed["labels"] == len(first.label_ids)
    assert db_session.scalar(select(func.count()).select_from(LabelSnapshot)) == 2

    out = tmp_path / "export"
    result = runner.invoke(app, ["labels", "export", changed["content_hash"][:12], "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "C6.jsonl").read_text().splitlines()]
    assert len(lines) == n_train and {line["split"] for line in lines} == {"train"}
    corrected = next(line for line in lines if line["problem_id"] == problem_id)
    assert corrected["source"] == "human" and corrected["payload"]["answer_type"] == "decimal"
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == changed["content_hash"]
    missing = runner.invoke(app, ["labels", "export", "999999", "--out", str(out)])
    assert missing.exit_code == 2 and "no label snapshot 999999" in missing.output
