"""Import reviewers' annotations into labels — idempotent on (annotation id, updated_at).

Two doors lead here: the webhook receiver (``labeling.webhook``) for each event as it happens, and
:func:`reconcile`, which pulls every review task's annotations from Label Studio and imports
what the webhook missed (including deletions). Both may see the same version any number of
times; only the first changes anything.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    Annotation,
    AnnotationAction,
    LabelTask,
    Problem,
    Program,
    ProgramSource,
    ReviewStatus,
    ReviewTask,
    Round,
)
from labeling import label_chain
from labeling.client import AnnotationVersion, list_tasks, task_annotations
from labeling.program_text import Verdict, verify_program_text
from labeling.review_labels import (
    HUMAN_CONFIDENCE,
    ReviewResultError,
    answer_type_of,
    labels_from_result,
    overlay_reviewer_spans,
    program_text_of,
)

LABELED_TASKS: tuple[LabelTask, ...] = (
    LabelTask.C1, LabelTask.C2, LabelTask.C3, LabelTask.C4, LabelTask.C5, LabelTask.C6,
)


def derive_human_labels(problem: Problem, verdict: Verdict, result: list) -> tuple[dict[str, dict], str | None]:
    """C1–C6 payloads from the reviewer's verified program, exactly as machine labels are derived
    (:func:`app.labels.derive.derive_labels`), with the reviewer's marked spans laid over them.

    Returns ``(payloads, error)``: empty payloads and the reason when nothing could be derived
    (no program parsed, or a program the derivation rejects).
    """
    if verdict.n_steps == 0:
        return {}, verdict.reason or "no_steps"
    from app.labels.derive import LabelError, derive_labels
    from app.labels.parse import clause_tables

    try:
        [table] = clause_tables([problem.text])
        derived = derive_labels(problem.text, verdict.program, problem.gold_answer, table)
    except LabelError as error:
        return {}, f"labels: {error}"
    payloads = overlay_reviewer_spans(derived, result, problem.text)
    chosen = answer_type_of(result)
    if chosen:
        payloads["C6"] = {**payloads["C6"], "answer_type": chosen}
    return payloads, None


def _store_program(session: Session, problem: Problem, verdict: Verdict) -> int | None:
    if verdict.n_steps == 0:
        return None
    program = Program(
        problem_id=problem.id,
        source=ProgramSource.HUMAN,
        steps=verdict.program,
        answer=verdict.answer,
        executes=verdict.status in ("reproduces_gold", "wrong_answer"),
        correct=verdict.correct,
        error=None if verdict.correct else verdict.reason,
    )
    session.add(program)
    session.flush()
    return program.id


@dataclass(frozen=True)
class ImportOutcome:
    """What one import did. ``status``: imported, duplicate, stale, after_delete, cancelled,
    deleted, unknown_task, unknown_annotation."""

    status: str
    ls_annotation_id: int
    annotation_row_id: int | None = None
    labels_appended: tuple[int, ...] = ()


def _review_task(session: Session, ls_task_id: int) -> ReviewTask | None:
    return session.scalar(select(ReviewTask).where(ReviewTask.ls_task_id == ls_task_id))


def _latest_version(session: Session, ls_annotation_id: int) -> datetime | None:
    return session.scalar(
        select(func.max(Annotation.ls_updated_at)).where(
            Annotation.ls_annotation_id == ls_annotation_id, Annotation.action != AnnotationAction.DELETED
        )
    )


def _existing_version(session: Session, ls_annotation_id: int, updated_at: datetime) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(
            Annotation.ls_annotation_id == ls_annotation_id, Annotation.ls_updated_at == updated_at
        )
    )


def import_annotation(session: Session, version: AnnotationVersion) -> ImportOutcome:
    """Import one annotation version; human labels supersede the live ones of each task.

    A task the annotation no longer labels (e.g. the answer type was cleared in an update)
    has its earlier human label withdrawn. Raises :class:`ReviewResultError` for a result
    that does not fit the problem text (nothing is written then).
    """
    review = _review_task(session, version.task_id)
    if review is None:
        return ImportOutcome("unknown_task", version.id)
    label_chain.lock_problem(session, review.problem_id)
    if _existing_version(session, version.id, version.updated_at) is not None:
        return ImportOutcome("duplicate", version.id)
    if label_chain.is_deleted(session, version.id):
        return ImportOutcome("after_delete", version.id)
    latest = _latest_version(session, version.id)
    action = AnnotationAction.CREATED if latest is None else AnnotationAction.UPDATED
    problem = session.get(Problem, review.problem_id)
    if problem is None:
        raise LookupError(f"review task {review.id} points at missing problem {review.problem_id}")
    program_text = None if version.was_cancelled else program_text_of(version.result)
    verdict: Verdict | None = None
    program_id: int | None = None
    try:
        if version.was_cancelled:
            payloads: dict[str, dict] = {}
        elif program_text is not None:
            verdict = verify_program_text(problem.text, program_text, problem.gold_answer)
            payloads, label_error = derive_human_labels(problem, verdict, version.result)
            if not payloads:  # nothing derivable: keep what the spans / answer type say
                payloads = labels_from_result(version.result, problem.text)
        else:
            payloads = labels_from_result(version.result, problem.text)
    except ReviewResultError as error:
        raise ReviewResultError(
            f"Label Studio annotation {version.id} (task {version.task_id}, problem {problem.id}): {error}"
        ) from error
    row = Annotation(
        review_task_id=review.id,
        ls_annotation_id=version.id,
        ls_updated_at=version.updated_at,
        action=action,
        result=version.result,
        annotator=version.annotator,
        program_text=program_text,
        lead_time_s=version.lead_time_s,
    )
    session.add(row)
    session.flush()
    if verdict is not None:
        program_id = _store_program(session, problem, verdict)
        row.verdict = {**verdict.as_json(), "program_id": program_id, "label_error": label_error}
    if latest is not None and version.updated_at < latest:
        return ImportOutcome("stale", version.id, row.id)  # history only: a newer version is already live
    appended: list[int] = []
    for task in LABELED_TASKS:
        payload = payloads.get(task.value)
        if payload is not None:
            label = label_chain.supersede_with_human(
                session,
                problem_id=review.problem_id,
                task=task,
                payload=payload,
                confidence=HUMAN_CONFIDENCE,
                round_id=review.round_id,
                annotation_row_id=row.id,
            )
            label.program_id = program_id
            appended.append(label.id)
        else:
            reason = "annotation cancelled" if version.was_cancelled else "task cleared in annotation update"
            appended.extend(
                label.id
                for label in label_chain.withdraw(
                    session,
                    problem_id=review.problem_id,
                    task=task,
                    ls_annotation_id=version.id,
                    round_id=review.round_id,
                    annotation_row_id=row.id,
                    reason=reason,
                )
            )
    review.status = ReviewStatus.IMPORTED
    return ImportOutcome("cancelled" if version.was_cancelled else "imported", version.id, row.id, tuple(appended))


def import_deletion(session: Session, ls_annotation_id: int, observed_at: datetime | None = None) -> ImportOutcome:
    """Record that an annotation was deleted and withdraw its labels (once)."""
    versions = list(
        session.scalars(
            select(Annotation).where(Annotation.ls_annotation_id == ls_annotation_id).order_by(Annotation.ls_updated_at)
        )
    )
    if not versions:
        return ImportOutcome("unknown_annotation", ls_annotation_id)
    review = session.get(ReviewTask, versions[-1].review_task_id)
    assert review is not None  # FK
    label_chain.lock_problem(session, review.problem_id)
    if label_chain.is_deleted(session, ls_annotation_id):
        return ImportOutcome("duplicate", ls_annotation_id)
    last_seen = versions[-1].ls_updated_at
    deleted_at = max(observed_at or datetime.now(UTC), last_seen + timedelta(microseconds=1))
    row = Annotation(
        review_task_id=review.id,
        ls_annotation_id=ls_annotation_id,
        ls_updated_at=deleted_at,
        action=AnnotationAction.DELETED,
        result=[],
        annotator=versions[-1].annotator,
    )
    session.add(row)
    session.flush()
    appended: list[int] = []
    for task in LABELED_TASKS:
        appended.extend(
            label.id
            for label in label_chain.withdraw(
                session,
                problem_id=review.problem_id,
                task=task,
                ls_annotation_id=ls_annotation_id,
                round_id=review.round_id,
                annotation_row_id=row.id,
                reason="annotation deleted",
            )
        )
    if not _has_live_annotation(session, review.id):
        review.status = ReviewStatus.WITHDRAWN
    return ImportOutcome("deleted", ls_annotation_id, row.id, tuple(appended))


def _has_live_annotation(session: Session, review_task_id: int) -> bool:
    """True if any annotation of the review task has not been deleted."""
    ids = set(session.scalars(select(Annotation.ls_annotation_id).where(Annotation.review_task_id == review_task_id)))
    return any(not label_chain.is_deleted(session, ls_id) for ls_id in ids)


# --------------------------------------------------------------------------- reconciliation


@dataclass
class ReconcileReport:
    """Counts of what a reconciliation pass did, by outcome status."""

    tasks_checked: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, outcome: ImportOutcome) -> None:
        self.outcomes[outcome.status] += 1

    def as_dict(self) -> dict[str, object]:
        return {"tasks_checked": self.tasks_checked, "outcomes": dict(self.outcomes)}


def _imported_live_ids(session: Session, review_task_id: int) -> set[int]:
    ids = set(session.scalars(select(Annotation.ls_annotation_id).where(Annotation.review_task_id == review_task_id)))
    return {ls_id for ls_id in ids if not label_chain.is_deleted(session, ls_id)}


def reconcile(session: Session, client: LabelStudio, round_number: int | None = None) -> ReconcileReport:
    """Pull annotations of every review task (of one round, or all) and import what is missing.

    Annotations that exist in Label Studio are imported (a no-op for versions already seen);
    imported annotations that Label Studio no longer has are imported as deletions.
    """
    query = select(ReviewTask).order_by(ReviewTask.id)
    if round_number is not None:
        query = query.join(Round, Round.id == ReviewTask.round_id).where(Round.number == round_number)
    reviews = list(session.scalars(query))
    report = ReconcileReport()
    by_project: dict[int, list[ReviewTask]] = defaultdict(list)
    for review in reviews:
        by_project[review.ls_project_id].append(review)
    for project_id, project_reviews in by_project.items():
        annotated = {task.id: task.total_annotations for task in list_tasks(client, project_id, ordering=None)}
        for review in project_reviews:
            live_ids = _imported_live_ids(session, review.id)
            if annotated.get(review.ls_task_id, 0) == 0 and not live_ids:
                continue
            report.tasks_checked += 1
            try:
                versions = task_annotations(client, review.ls_task_id)
            except ApiError as error:
                if error.status_code != 404:
                    raise
                versions = []  # the task itself is gone: so are its annotations
            for version in versions:
                report.add(import_annotation(session, version))
            present = {version.id for version in versions}
            for ls_id in sorted(live_ids - present):
                report.add(import_deletion(session, ls_id))
    return report
