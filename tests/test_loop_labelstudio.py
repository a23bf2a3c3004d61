"""The closed loop against a real Label Studio server: push a round selected from tiny trained
specialists, submit a corrected program through the SDK, import it (execution verdict + C1–C6
human labels), close the round, see a new model version and ``models_after`` filled."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio
from sqlalchemy import select, text

from app.db.models import Annotation, Problem, Program, ProgramSource, Split
from labeling import client as ls
from labeling.importer import reconcile
from labeling.program_text import render_program
from labeling.push import push_round
from labeling.retrain import RetrainConfig, close_and_retrain
from labeling.rounds import latest_verdicts, start_round
from tests.labelstudio_fixtures import label_studio, ls_client  # noqa: F401

pytestmark = pytest.mark.labelstudio


def test_loop_push_correct_import_close_retrain(db_session, trained, ls_client: LabelStudio,  # noqa: F811
                                                tmp_path: Path) -> None:
    from app.inference.store import run_inference
    from tests.training_helpers import tiny_train_config

    train_ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))
    run_inference(db_session, trained, train_ids, commit=True)
    started = start_round(db_session, budget=3)
    db_session.commit()
    pushed = push_round(db_session, ls_client, started.round, project_title=f"loop-{uuid.uuid4().hex[:8]}")
    db_session.commit()
    assert pushed.created == 3

    # the task as a reviewer opens it: the model's program, typed steps, operand relations, scores, reason
    first = ls.list_tasks(ls_client, pushed.project_id)[0]
    task = ls_client.tasks.get(id=str(first.id))
    assert task.data["prefill_source"] == "model" and "model C1v1.C2v1" in task.data["header"]
    assert task.data["review_info"].startswith("Why this task: composite=")
    [prediction] = task.predictions
    kinds = {r["type"] for r in prediction.result}
    assert "textarea" in kinds and "labels" in kinds
    typed = [r for r in prediction.result if r["type"] == "labels" and r["value"]["labels"][0] not in ("OPERAND", "REGION")]
    assert all(isinstance(r.get("score"), float) for r in typed)

    # the reviewer replaces the model's program with the reference one and submits
    problem = db_session.get(Problem, first.problem_id)
    reference = db_session.scalar(select(Program).where(Program.problem_id == problem.id,
                                                        Program.source == ProgramSource.REFERENCE))
    corrected = render_program(reference.steps)
    op = reference.steps["steps"][0]["op"]
    result = [
        {"id": "prog", "from_name": "program", "to_name": "text", "type": "textarea", "value": {"text": [corrected]}},
        {"id": "s1", "from_name": "span", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": len(problem.text), "text": problem.text, "labels": [op]}},
        {"from_name": "answer_type", "to_name": "text", "type": "choices", "value": {"choices": ["integer"]}},
    ]
    made = ls_client.annotations.create(id=first.id, result=result, lead_time=95.0)

    report = reconcile(db_session, ls_client, started.round.number)
    db_session.commit()
    assert dict(report.outcomes) == {"imported": 1}
    row = db_session.scalars(select(Annotation).where(Annotation.ls_annotation_id == made.id)).one()
    assert row.program_text == corrected and row.lead_time_s == pytest.approx(95.0)
    assert row.verdict["status"] == "reproduces_gold" and row.verdict["gold"] == problem.gold_answer
    [verdict] = latest_verdicts(db_session, started.round).values()
    assert verdict["trained_on"] is True
    live = db_session.execute(text("SELECT task::text, source::text FROM current_labels WHERE problem_id = :p"),
                              {"p": problem.id}).all()
    assert sorted(live) == [(f"C{k}", "human") for k in range(1, 7)]

    config = RetrainConfig(backbone=str(tmp_path / "tiny"), device="cpu", train=asdict(tiny_train_config(2)),
                           eval_limit=4)
    summary = close_and_retrain(started.round.number, config, inline=True)
    assert summary["status"] == "closed" and summary["retrain"]["state"] == "done"
    assert summary["models_before"] == {f"C{k}": "v1" for k in range(1, 7)}
    assert summary["models_after"] == {f"C{k}": "v2" for k in range(1, 7)}
    assert summary["retrain"]["after"]["splits"]["dev"]["n"] == 4
    assert summary["retrain"]["effort"]["annotator_seconds"] == pytest.approx(95.0)
