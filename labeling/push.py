"""Push a round's selection to Label Studio as pre-annotated tasks — idempotent.

A selected problem becomes one task carrying the problem text and the pre-fill of
:mod:`labeling.drafts` (the specialists' program when they exist, else the reference program,
else attention regions typed with the live machine C2 operation), the task score (1 − priority:
most uncertain lowest), the selection reason and uncertainties, and the round's ``model_version``. Tasks are keyed by round and problem in both Postgres (``review_tasks``)
and Label Studio (``data.mycelium_key``): pushing again creates nothing new, and a push that
died between Label Studio and the database is repaired by adopting the task already there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, Label, LabelTask, Problem, Region, RegionSource, ReviewStatus, ReviewTask, Round, Selection
from labeling import client as ls
from labeling.candidates import CONTEXT_SOURCES
from labeling.config_xml import UNTYPED_LABEL, label_config
from labeling.label_chain import live_labels
from labeling.review_labels import region_labels
from labeling.rounds import RoundError, refresh_stats, selections_of
from labeling.selection import task_score
from labeling.drafts import review_draft
from labeling.task_payload import RegionPrediction, SelectionInfo, build_task


@dataclass(frozen=True)
class PushResult:
    project_id: int
    created: int
    adopted: int
    already_pushed: int
    webhook_id: int | None = None
    task_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "created": self.created,
            "adopted": self.adopted,
            "already_pushed": self.already_pushed,
            "webhook_id": self.webhook_id,
        }


def region_predictions(session: Session, problem_id: int) -> list[RegionPrediction]:
    """Regions to pre-fill: from the first of model → clause → IAF sources that has any."""
    rows = session.execute(
        select(Region.char_start, Region.char_end, Region.score, Region.source)
        .where(Region.problem_id == problem_id, Region.source.in_(CONTEXT_SOURCES))
        .order_by(Region.char_start, Region.char_end, Region.id)
    ).all()
    by_source: dict[RegionSource, list[Any]] = defaultdict(list)
    for row in rows:
        by_source[row.source].append(row)
    chosen = next((by_source[source] for source in CONTEXT_SOURCES if by_source[source]), [])
    operations = {(start, end): label for start, end, label in _live_operations(session, problem_id)}
    return [
        RegionPrediction(
            start=row.char_start,
            end=row.char_end,
            score=row.score,
            label=operations.get((row.char_start, row.char_end), UNTYPED_LABEL),
            source=str(row.source),
        )
        for row in chosen
    ]


def _live_operations(session: Session, problem_id: int) -> list[tuple[int, int, str]]:
    live = live_labels(session, problem_id, LabelTask.C2)
    return region_labels(live[0].payload) if live else []


def _dataset_name(session: Session, problem: Problem) -> str | None:
    dataset = session.get(Dataset, problem.dataset_id)
    return dataset.name if dataset is not None else None


def task_for_selection(session: Session, round_: Round, selection: Selection) -> dict[str, Any]:
    """The Label Studio task payload of one selected problem (see :mod:`labeling.drafts`)."""
    problem = session.get(Problem, selection.problem_id)
    if problem is None:
        raise LookupError(f"selection {selection.id} of round {round_.number} points at missing problem")
    draft = review_draft(session, problem, region_predictions(session, problem.id))
    components = (round_.stats or {}).get("components", {}).get(str(problem.id), {})
    return build_task(
        problem_id=problem.id,
        round_number=round_.number,
        text=problem.text,
        model_version=round_.model_version,
        task_score=task_score(selection.score),
        draft=draft,
        selection=SelectionInfo(priority=selection.score, reason=selection.reason, components=components),
        dataset=_dataset_name(session, problem),
    )


def push_round(
    session: Session,
    client: LabelStudio,
    round_: Round,
    *,
    project_title: str = ls.DEFAULT_PROJECT_TITLE,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> PushResult:
    """Make sure every selection of ``round_`` is a Label Studio task (and a ``review_tasks`` row)."""
    if str(round_.status) != "open":
        raise RoundError(f"round {round_.number} is closed; start a new round to push")
    project = ls.ensure_project(client, project_title, label_config(), round_.model_version)
    webhook_id = ls.ensure_webhook(client, project.id, webhook_url, webhook_secret) if webhook_url else None
    pushed = set(session.scalars(select(ReviewTask.problem_id).where(ReviewTask.round_id == round_.id)))
    pending = [s for s in selections_of(session, round_) if s.problem_id not in pushed]
    in_label_studio = {t.key: t for t in ls.list_tasks(client, project.id, ordering=None) if t.key}
    adopt: list[tuple[Selection, int]] = []
    create: list[Selection] = []
    for selection in pending:
        existing = in_label_studio.get(ls.task_key(round_.number, selection.problem_id))
        if existing is not None:
            adopt.append((selection, existing.id))
        else:
            create.append(selection)
    payloads = [task_for_selection(session, round_, s) for s in create]
    created_ids = ls.import_tasks(client, project.id, payloads) if payloads else []
    for selection, ls_task_id in [*adopt, *zip(create, created_ids)]:
        session.add(
            ReviewTask(
                round_id=round_.id,
                problem_id=selection.problem_id,
                ls_project_id=project.id,
                ls_task_id=ls_task_id,
                task_score=task_score(selection.score),
                model_version=round_.model_version,
                status=ReviewStatus.PUSHED,
            )
        )
    session.flush()
    refresh_stats(session, round_)
    return PushResult(
        project_id=project.id,
        created=len(create),
        adopted=len(adopt),
        already_pushed=len(pushed),
        webhook_id=webhook_id,
        task_ids=[*(i for _, i in adopt), *created_ids],
    )


def review_tasks_of(session: Session, round_: Round) -> Sequence[ReviewTask]:
    """The round's review tasks, most uncertain (lowest task score) first."""
    return list(
        session.scalars(
            select(ReviewTask).where(ReviewTask.round_id == round_.id).order_by(ReviewTask.task_score, ReviewTask.id)
        )
    )
