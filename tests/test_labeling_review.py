"""Human review end to end against a real Label Studio server and the real Postgres schema.

Label Studio is started by the suite (``tests/labelstudio_fixtures.py``); annotations are made
through its REST API as a reviewer would, and reach Postgres through the webhook receiver.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from label_studio_sdk import LabelStudio
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.db.models import Annotation, AnnotationAction, Label, LabelSource, ReviewStatus, ReviewTask, Selection
from labeling import client as ls
from labeling.importer import reconcile
from labeling.push import push_round
from labeling.rounds import close_round, round_summary, start_round
from labeling.server import LabelStudioServer
from labeling.webhook import PeriodicReconciler
from tests.labeling_seed import SEED, seed_problems
from tests.labelstudio_fixtures import WebhookReceiver, label_studio, ls_client, webhook_receiver  # noqa: F401

pytestmark = pytest.mark.labelstudio

# Most uncertain first, from the seed's composite priorities (see tests/labeling_seed.py):
# problem 2 is a near-duplicate of problem 1 and problem 7 is the most certain; 8 is dev.
EXPECTED_SELECTION = [1, 3, 4, 5, 6]


def _project_title() -> str:
    return f"review-test-{uuid.uuid4().hex[:8]}"


def _current(session: Session, problem_id: int, task: str) -> list[dict[str, Any]]:
    session.expire_all()
    rows = session.execute(
        text("SELECT id, source::text AS source, payload FROM current_labels WHERE problem_id = :p AND task = :t"),
        {"p": problem_id, "t": task},
    ).mappings()
    return [dict(row) for row in rows]


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met within timeout")


def _span(text_: str, phrase: str, label: str) -> dict[str, Any]:
    start = text_.index(phrase)
    return {
        "from_name": "span",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(phrase), "text": phrase, "labels": [label]},
    }


def _choice(value: str) -> dict[str, Any]:
    return {"from_name": "answer_type", "to_name": "text", "type": "choices", "value": {"choices": [value]}}


def _note(value: str) -> dict[str, Any]:
    return {"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": [value]}}


def _annotation_rows(session: Session, ls_annotation_id: int) -> list[Annotation]:
    session.expire_all()
    return list(
        session.scalars(
            select(Annotation).where(Annotation.ls_annotation_id == ls_annotation_id).order_by(Annotation.id)
        )
    )


def test_review_round_trip(
    db_session: Session,
    ls_client: LabelStudio,  # noqa: F811
    label_studio: LabelStudioServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    seed_problems(db_session)
    title = _project_title()

    # --- selection: budget 5, diverse, recorded with strategy / score / reason
    started = start_round(db_session, budget=5, strategy="composite")
    db_session.commit()
    selections = started.selections
    assert [s.problem_id for s in selections] == EXPECTED_SELECTION
    assert all(s.strategy == "composite" and s.reason.startswith("composite=") for s in selections)
    assert selections[0].score == pytest.approx(0.9876, abs=1e-3)
    assert "execution failed (ZeroDivisionError)" in selections[0].reason
    assert started.round.model_version == "r1-attention"

    # --- push: 5 tasks with scored predictions; project in uncertainty sampling at the round's version
    pushed = push_round(
        db_session,
        ls_client,
        started.round,
        project_title=title,
        webhook_url=webhook_receiver.webhook_url,
        webhook_secret=webhook_receiver.secret,
    )
    db_session.commit()
    assert (pushed.created, pushed.adopted, pushed.already_pushed) == (5, 0, 0)
    project = ls_client.projects.get(id=pushed.project_id)
    assert project.sampling == "Uncertainty sampling"
    assert project.model_version == "r1-attention"

    ordered = ls.list_tasks(ls_client, pushed.project_id)
    assert [t.problem_id for t in ordered] == EXPECTED_SELECTION  # lowest score (most uncertain) first
    scores = [t.predictions_score for t in ordered]
    assert scores == sorted(scores) and scores[0] == pytest.approx(1 - selections[0].score, abs=1e-6)
    assert ls.next_task_id(ls_client, pushed.project_id) == ordered[0].id  # the labeling stream agrees

    first = ls_client.tasks.get(id=str(ordered[0].id))
    [prediction] = first.predictions
    assert prediction.model_version == "r1-attention"
    [region] = [r for r in prediction.result if r["type"] == "labels"]
    assert region["value"]["text"] == "she sold half as many clips in May"
    assert region["value"]["labels"] == ["MUL"]  # the live machine C2 operation pre-fills the label
    assert region["score"] == pytest.approx(0.52)

    # --- re-push: nothing new in Label Studio or Postgres
    again = push_round(db_session, ls_client, started.round, project_title=title)
    db_session.commit()
    assert (again.created, again.adopted, again.already_pushed) == (0, 0, 5)
    assert len(ls.list_tasks(ls_client, pushed.project_id)) == 5
    assert db_session.scalar(select(func.count()).select_from(ReviewTask)) == 5

    # --- a reviewer corrects the most uncertain task through the API; the webhook imports it
    problem_id = ordered[0].problem_id
    problem_text = SEED[problem_id - 1].text
    machine_c1 = _current(db_session, problem_id, "C1")
    assert [row["source"] for row in machine_c1] == ["teacher"]
    created = ls_client.annotations.create(
        id=ordered[0].id,
        result=[
            _span(problem_text, "48", "DIV"),
            _span(problem_text, "half as many clips", "DIV"),
            _choice("integer"),
            _note("the region missed the operand 48"),
        ],
        lead_time=21.5,
    )
    _wait_for(lambda: len(_annotation_rows(db_session, created.id)) == 1)
    [row] = _annotation_rows(db_session, created.id)
    assert row.action == AnnotationAction.CREATED
    assert row.annotator == f"ls-user:{ls_client.users.whoami().id}"

    c1 = _current(db_session, problem_id, "C1")
    assert [r["source"] for r in c1] == ["human"]
    assert [(g["start"], g["text"]) for g in c1[0]["payload"]["regions"]] == [
        (problem_text.index("48"), "48"),
        (problem_text.index("half as many clips"), "half as many clips"),
    ]
    human_c1 = db_session.get(Label, c1[0]["id"])
    assert human_c1 is not None and human_c1.supersedes_id == machine_c1[0]["id"]  # history kept
    assert db_session.get(Label, machine_c1[0]["id"]) is not None
    assert human_c1.round_id == started.round.id and human_c1.confidence == 1.0
    assert _current(db_session, problem_id, "C6")[0]["payload"] == {"answer_type": "integer"}
    assert [g["label"] for g in _current(db_session, problem_id, "C2")[0]["payload"]["regions"]] == ["DIV", "DIV"]
    review = db_session.scalar(select(ReviewTask).where(ReviewTask.ls_task_id == ordered[0].id))
    assert review is not None and review.status == ReviewStatus.IMPORTED

    # --- re-running the import (reconciliation, and the same webhook again) changes nothing
    labels_before = db_session.scalar(select(func.count()).select_from(Label))
    report = reconcile(db_session, ls_client, started.round.number)
    db_session.commit()
    assert dict(report.outcomes) == {"duplicate": 1}
    replay = httpx.post(
        webhook_receiver.webhook_url,
        headers={"X-Mycelium-Secret": webhook_receiver.secret},
        json={
            "action": "ANNOTATION_CREATED",
            "annotation": ls_client.annotations.get(id=created.id).model_dump(mode="json"),
        },
    )
    assert replay.status_code == 200 and replay.json()["imported"][0]["status"] == "duplicate"
    assert db_session.scalar(select(func.count()).select_from(Label)) == labels_before
    assert len(_annotation_rows(db_session, created.id)) == 1

    # --- the reviewer updates the annotation: the new version supersedes the previous human label
    ls_client.annotations.update(
        id=created.id,
        result=[_span(problem_text, "half as many clips in May", "DIV"), _choice("integer")],
    )
    _wait_for(lambda: len(_annotation_rows(db_session, created.id)) == 2)
    assert [r.action for r in _annotation_rows(db_session, created.id)] == [
        AnnotationAction.CREATED,
        AnnotationAction.UPDATED,
    ]
    c1_updated = _current(db_session, problem_id, "C1")
    assert [g["text"] for g in c1_updated[0]["payload"]["regions"]] == ["half as many clips in May"]
    assert db_session.get(Label, c1_updated[0]["id"]).supersedes_id == c1[0]["id"]  # type: ignore[union-attr]
    assert len(_current(db_session, problem_id, "C1")) == 1

    # --- the reviewer deletes it: the human labels are withdrawn, the machine labels are back
    ls_client.annotations.delete(id=created.id)
    _wait_for(lambda: len(_annotation_rows(db_session, created.id)) == 3)
    assert _annotation_rows(db_session, created.id)[-1].action == AnnotationAction.DELETED
    restored = _current(db_session, problem_id, "C1")
    assert [(r["source"], r["payload"]) for r in restored] == [("teacher", machine_c1[0]["payload"])]
    assert _current(db_session, problem_id, "C6") == []  # there was no machine answer type
    withdrawals = db_session.scalars(
        select(Label).where(Label.problem_id == problem_id, Label.is_withdrawal.is_(True))
    ).all()
    assert {str(w.task) for w in withdrawals} == {"C1", "C2", "C6"}
    assert all(w.source == LabelSource.HUMAN and w.payload["reason"] == "annotation deleted" for w in withdrawals)
    db_session.expire_all()
    assert db_session.get(ReviewTask, review.id).status == ReviewStatus.WITHDRAWN  # type: ignore[union-attr]

    # --- and a further reconciliation is a no-op
    labels_after_delete = db_session.scalar(select(func.count()).select_from(Label))
    report = reconcile(db_session, ls_client, started.round.number)
    db_session.commit()
    assert report.tasks_checked == 0 and dict(report.outcomes) == {}
    assert db_session.scalar(select(func.count()).select_from(Label)) == labels_after_delete

    # --- the round records what happened
    summary = round_summary(db_session, close_round(db_session))
    db_session.commit()
    assert summary["status"] == "closed"
    assert {k: summary["stats"][k] for k in ("selected", "sent", "annotated", "annotation_versions", "withdrawn")} == {
        "selected": 5,
        "sent": 5,
        "annotated": 1,
        "annotation_versions": 3,
        "withdrawn": 1,
    }


def test_reconciliation_imports_what_the_webhook_missed(
    db_session: Session,
    ls_client: LabelStudio,  # noqa: F811
    label_studio: LabelStudioServer,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    seed_problems(db_session)
    started = start_round(db_session, budget=3, strategy="entropy")
    db_session.commit()
    pushed = push_round(db_session, ls_client, started.round, project_title=_project_title())  # no webhook
    db_session.commit()
    tasks = ls.list_tasks(ls_client, pushed.project_id)
    problem_text = SEED[tasks[1].problem_id - 1].text
    made = ls_client.annotations.create(id=tasks[1].id, result=[_span(problem_text, problem_text[:5], "ADD")])
    assert _annotation_rows(db_session, made.id) == []  # nobody told us

    # the receiver's periodic reconciliation picks it up
    reconciler = PeriodicReconciler(0.3, lambda: ls.connect(label_studio.url, label_studio.token))
    reconciler.start()
    try:
        _wait_for(lambda: len(_annotation_rows(db_session, made.id)) == 1)
    finally:
        reconciler.stop()
    assert reconciler.runs >= 1
    assert _current(db_session, tasks[1].problem_id, "C1")[0]["source"] == "human"
    report = reconcile(db_session, ls_client, started.round.number)
    db_session.commit()
    assert dict(report.outcomes) == {"duplicate": 1}

    ls_client.annotations.delete(id=made.id)
    report = reconcile(db_session, ls_client, started.round.number)
    db_session.commit()
    assert dict(report.outcomes) == {"deleted": 1}
    assert _current(db_session, tasks[1].problem_id, "C1")[0]["source"] == "teacher"


def test_webhook_requires_the_secret_and_tolerates_payloadless_events(
    db_session: Session,
    ls_client: LabelStudio,  # noqa: F811
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    seed_problems(db_session)
    started = start_round(db_session, budget=2)
    db_session.commit()
    pushed = push_round(db_session, ls_client, started.round, project_title=_project_title())
    db_session.commit()
    task = ls.list_tasks(ls_client, pushed.project_id)[0]
    made = ls_client.annotations.create(id=task.id, result=[_choice("fraction")])

    wrong = httpx.post(webhook_receiver.webhook_url, headers={"X-Mycelium-Secret": "nope"}, json={})
    assert wrong.status_code == 401
    missing = httpx.post(webhook_receiver.webhook_url, json={"action": "ANNOTATION_CREATED"})
    assert missing.status_code == 401

    headers = {"X-Mycelium-Secret": webhook_receiver.secret}
    bare = httpx.post(webhook_receiver.webhook_url, headers=headers, json={"action": "ANNOTATION_CREATED"})
    assert bare.status_code == 200
    assert bare.json()["reconciled"]["outcomes"] == {"imported": 1}
    again = httpx.post(webhook_receiver.webhook_url, headers=headers, json={"action": "ANNOTATION_UPDATED"})
    assert again.status_code == 200 and again.json()["reconciled"]["outcomes"] == {"duplicate": 1}
    empty = httpx.post(webhook_receiver.webhook_url, headers=headers, content=b"")  # malformed: no outbound work
    assert empty.status_code == 400 and empty.json()["error"].startswith("empty body")
    other = httpx.post(webhook_receiver.webhook_url, headers=headers, json={"action": "PROJECT_UPDATED"})
    assert other.json() == {"action": "PROJECT_UPDATED", "ignored": True}
    assert [r.action for r in _annotation_rows(db_session, made.id)] == [AnnotationAction.CREATED]
    assert _current(db_session, task.problem_id, "C6")[0]["payload"] == {"answer_type": "fraction"}


def test_push_adopts_tasks_left_by_an_interrupted_push(
    db_session: Session,
    ls_client: LabelStudio,  # noqa: F811
) -> None:
    seed_problems(db_session)
    title = _project_title()
    started = start_round(db_session, budget=4)
    db_session.commit()
    push_round(db_session, ls_client, started.round, project_title=title)
    db_session.rollback()  # Label Studio has the tasks, Postgres lost the review_tasks rows
    assert db_session.scalar(select(func.count()).select_from(ReviewTask)) == 0

    repaired = push_round(db_session, ls_client, started.round, project_title=title)
    db_session.commit()
    assert (repaired.created, repaired.adopted) == (0, 4)
    project_id = repaired.project_id
    assert len(ls.list_tasks(ls_client, project_id)) == 4
    assert db_session.scalar(select(func.count()).select_from(ReviewTask)) == 4


def test_round_and_review_cli(
    db_session: Session,
    ls_client: LabelStudio,  # noqa: F811
    label_studio: LabelStudioServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import get_settings
    from labeling.cli import review_app, round_app

    seed_problems(db_session)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        started = runner.invoke(round_app, ["start", "--budget", "3", "--strategy", "margin", "--json"])
        assert started.exit_code == 0, started.output
        summary = json.loads(started.stdout)
        assert (summary["number"], summary["status"], summary["created"]) == (1, "open", True)
        assert summary["stats"]["selected"] == 3

        again = runner.invoke(round_app, ["start", "--json"])
        assert again.exit_code == 0 and json.loads(again.stdout)["created"] is False
        conflict = runner.invoke(round_app, ["start", "--budget", "9"])
        assert conflict.exit_code == 2 and "round 1 is open" in conflict.output

        title = _project_title()
        pushed = runner.invoke(review_app, ["push", "--project", title, "--json"])
        assert pushed.exit_code == 0, pushed.output
        assert json.loads(pushed.stdout)["created"] == 3
        repushed = runner.invoke(review_app, ["push", "--project", title, "--json"])
        assert json.loads(repushed.stdout)["created"] == 0

        status = runner.invoke(review_app, ["status", "--json"])
        rows = json.loads(status.stdout)["tasks"]
        assert [r["status"] for r in rows] == ["pushed"] * 3
        assert [r["task_score"] for r in rows] == sorted(r["task_score"] for r in rows)

        pulled = runner.invoke(review_app, ["pull", "--json"])
        assert pulled.exit_code == 0 and json.loads(pulled.stdout) == {"tasks_checked": 0, "outcomes": {}}

        round_status = runner.invoke(round_app, ["status", "--json"])
        stats = json.loads(round_status.stdout)["stats"]
        assert (stats["selected"], stats["sent"], stats["annotated"]) == (3, 3, 0)
        refused = runner.invoke(round_app, ["close", "--json"])
        assert refused.exit_code == 2 and "3 of 3 selected problems are not reviewed yet" in refused.output
        closed = runner.invoke(round_app, ["close", "--force", "--json"])
        assert json.loads(closed.stdout)["status"] == "closed"
        assert db_session.scalar(select(func.count()).select_from(Selection)) == 3
    finally:
        get_settings.cache_clear()
