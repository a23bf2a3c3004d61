"""The closed loop without Label Studio: a round selected from tiny trained specialists' own outputs,
a verified correction imported, and the round close retraining (train → evaluate → attribute)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from app.db.models import Job, Problem, Program, ProgramSource, ReviewStatus, ReviewTask, Split
from labeling.client import AnnotationVersion
from labeling.importer import import_annotation
from labeling.program_text import render_program
from labeling.push import task_for_selection
from labeling.retrain import RetrainConfig, close_and_retrain, stopping_rule
from labeling.rounds import start_round

V1 = {s: "v1" for s in ("C1", "C2", "C3", "C4", "C5", "C6")}


def test_stopping_rule_needs_two_rounds_below_the_threshold() -> None:
    assert stopping_rule([0.05, 0.004], 0.01, 2)["stop"] is False
    rule = stopping_rule([0.05, 0.004, -0.01], 0.01, 2)
    assert rule["stop"] is True and rule["rounds_below"] == 2 and rule["advice"].startswith("stop")
    assert stopping_rule([None, 0.0], 0.01, 2)["stop"] is False  # an unmeasured round does not count


def test_round_from_trained_specialists_retrains_on_close(db_session, trained, tmp_path: Path) -> None:
    from app.inference.store import run_inference
    from tests.training_helpers import tiny_train_config

    train_ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))
    run_inference(db_session, trained, train_ids, commit=True)  # the specialists' outputs on the pool

    started = start_round(db_session, budget=4)
    db_session.commit()
    round_ = started.round
    assert round_.models_before == V1 and len(started.selections) == 4
    assert all("decisions" in s.reason for s in started.selections)  # scored from the specialists' outputs
    first = started.selections[0]
    task = task_for_selection(db_session, round_, first)
    assert task["data"]["prefill_source"] == "model" and "C1v1.C2v1" in task["data"]["header"]
    assert task["data"]["review_info"].startswith("Why this task: composite=")

    # the reviewer writes the reference program and marks the first step's sentence
    problem = db_session.get(Problem, first.problem_id)
    reference = db_session.scalar(select(Program).where(Program.problem_id == problem.id,
                                                        Program.source == ProgramSource.REFERENCE))
    program_text = render_program(reference.steps)
    first_op = reference.steps["steps"][0]["op"]
    review = ReviewTask(round_id=round_.id, problem_id=problem.id, ls_project_id=1, ls_task_id=5001,
                        task_score=0.1, model_version=round_.model_version, status=ReviewStatus.PUSHED)
    db_session.add(review)
    db_session.commit()
    result = [
        {"from_name": "program", "to_name": "text", "type": "textarea", "value": {"text": [program_text]}},
        {"from_name": "span", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": len(problem.text), "text": problem.text, "labels": [first_op]}},
    ]
    import_annotation(db_session, AnnotationVersion(1, 5001, datetime(2026, 1, 1, tzinfo=UTC), result, "ls-user:1",
                                                    False, lead_time_s=30.0))
    db_session.commit()

    config = RetrainConfig(backbone=str(tmp_path / "tiny"), device="cpu", train=asdict(tiny_train_config(2)),
                           eval_limit=5)
    summary = close_and_retrain(None, config, inline=True)
    retrain = summary["retrain"]
    assert summary["status"] == "closed" and retrain["state"] == "done"
    assert summary["models_before"] == V1
    assert summary["models_after"] == {s: "v2" for s in V1}  # a new version of every specialist
    assert retrain["after"]["model_version"] == "C1v2.C2v2.C3v2.C4v2.C5v2.C6v2"
    assert retrain["after"]["splits"]["dev"]["n"] == 5 and retrain["before"]["splits"]["dev"]["n"] == 5
    assert retrain["effort"]["labels_added"] == 6 and retrain["effort"]["annotator_seconds"] == 30.0
    assert retrain["effort"]["corrections_reproducing_gold"] == 1
    assert retrain["stopping"]["patience"] == 2 and retrain["stopping"]["stop"] is False
    jobs = retrain["jobs"]
    assert {"train", "evaluate", "attribute"} <= set(jobs)
    db_session.expire_all()
    kinds = {db_session.get(Job, jobs["train"]).kind, db_session.get(Job, jobs["attribute"]).kind}
    assert kinds == {"train", "attribute"}
    assert all(str(db_session.get(Job, j).status) == "succeeded" for j in [jobs["train"], jobs["attribute"],
                                                                           *jobs["evaluate"].values()])
