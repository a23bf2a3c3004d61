"""The job table: idempotency keys, create-or-get, item claims, progress, completion, cancellation.

Every function takes the caller's session and never commits, except where noted; the caller's
transaction decides what becomes visible together. Concurrency rules:

* items are claimed with ``FOR UPDATE SKIP LOCKED`` and stay locked until the transaction that
  writes their results commits, so two workers never process the same item at once, and a worker
  that dies releases its items (Postgres rolls its transaction back) without leaving rows behind;
* progress (``jobs.done``) is bumped under the job row's lock, so exactly one transaction sees the
  last item finish and closes the job;
* locks are always taken items first, job row second, or with ``SKIP LOCKED`` — never a cycle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import ItemStatus, Job, JobItem, JobStatus

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
REOPENABLE = (JobStatus.FAILED, JobStatus.CANCELLED)
ITEM_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class ClaimedItem:
    id: int
    key: str


def idempotency_key(kind: str, params: Mapping[str, Any], item_keys: Sequence[str], code_version: str) -> str:
    """sha256 hex of the kind, its parameters, its input item keys and the kind's code version."""
    payload = {"kind": kind, "params": params, "inputs": sorted(item_keys), "code_version": code_version}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_summary(job: Job) -> dict[str, Any]:
    """The public JSON view of a job (``mycelium jobs show --json``)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": str(job.status),
        "done": job.done,
        "total": job.total,
        "error": job.error,
    }


def create_or_get_job(
    session: Session, kind: str, params: Mapping[str, Any], item_keys: Sequence[str], key: str
) -> tuple[Job, bool]:
    """Insert the job and its items unless a job with ``key`` exists; returns (job, created).

    Two concurrent submissions of the same key serialise on the unique index: one inserts, the
    other gets the existing row. A job without items is born succeeded.
    """
    status = JobStatus.QUEUED if item_keys else JobStatus.SUCCEEDED
    job_id = session.scalar(
        insert(Job)
        .values(
            kind=kind,
            params=dict(params),
            idempotency_key=key,
            status=status,
            done=0,
            total=len(item_keys),
            finished_at=None if item_keys else func.now(),
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Job.id)
    )
    created = job_id is not None
    if created:
        rows = [{"job_id": job_id, "item_key": k, "status": ItemStatus.PENDING} for k in item_keys]
        for start in range(0, len(rows), ITEM_INSERT_CHUNK):
            session.execute(insert(JobItem), rows[start : start + ITEM_INSERT_CHUNK])
    job = session.scalars(select(Job).where(Job.idempotency_key == key).execution_options(populate_existing=True)).one()
    return job, created


def reopen_job(session: Session, job_id: int) -> int:
    """Put a failed or cancelled job's unfinished items back in the queue; returns how many were reset.

    Succeeded items are kept (re-running skips done work). Other job states are left alone (0).
    """
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
    if job.status not in REOPENABLE:
        return 0
    failed = session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.FAILED)
        .values(status=ItemStatus.PENDING, error=None, finished_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.CANCELLED)
        .values(status=ItemStatus.PENDING, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    pending = session.scalar(
        select(func.count()).where(JobItem.job_id == job_id, JobItem.status == ItemStatus.PENDING)
    )
    job.status = JobStatus.QUEUED
    job.done = job.done - failed
    job.error = None
    job.finished_at = None
    session.flush()
    return int(pending or 0)


def record_task_ids(session: Session, job_id: int, task_ids: Sequence[str]) -> None:
    """Append the Celery task ids that were sent for a job."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(celery_task_ids=Job.celery_task_ids + list(task_ids))
        .execution_options(synchronize_session=False)
    )


def mark_running(session: Session, job_id: int) -> None:
    """queued → running, stamping ``started_at`` (no-op in any other state)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, started_at=func.coalesce(Job.started_at, func.now()))
        .execution_options(synchronize_session=False)
    )


def claim_items(session: Session, job_id: int, limit: int, worker: str) -> list[ClaimedItem]:
    """Lock up to ``limit`` pending items of an active job that no other transaction holds.

    The locks (and the ``running`` state written here) last until the caller's transaction ends:
    commit it together with the items' results and :func:`complete_items`.
    """
    job_is_active = exists().where(Job.id == job_id, Job.status.in_(ACTIVE))
    free = (
        select(JobItem.id)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.PENDING, job_is_active)
        .order_by(JobItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=JobItem)
    )
    rows = session.execute(
        update(JobItem)
        .where(JobItem.id.in_(free.scalar_subquery()))
        .values(status=ItemStatus.RUNNING, worker=worker, claimed_at=func.now())
        .returning(JobItem.id, JobItem.item_key)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((ClaimedItem(id=row.id, key=row.item_key) for row in rows), key=lambda item: item.id)


def complete_items(session: Session, job_id: int, succeeded: Sequence[int], failed: Mapping[int, str]) -> JobStatus:
    """Mark claimed items succeeded / failed (with their error), bump progress, close the job if last.

    ``failed`` maps item id → error text; the job keeps the first line of the first item error it
    sees. Returns the job's status after this call.
    """
    if succeeded:
        session.execute(
            update(JobItem)
            .where(JobItem.id.in_(list(succeeded)))
            .values(status=ItemStatus.SUCCEEDED, error=None, attempts=JobItem.attempts + 1, finished_at=func.now())
            .execution_options(synchronize_session=False)
        )
    for item_id, error in failed.items():
        session.execute(
            update(JobItem)
            .where(JobItem.id == item_id)
            .values(status=ItemStatus.FAILED, error=error, attempts=JobItem.attempts + 1, finished_at=func.now())
            .execution_options(synchronize_session=False)
        )
    first_error = next((error.splitlines()[0] for error in failed.values() if error), None)
    job = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(done=Job.done + len(succeeded) + len(failed), error=func.coalesce(Job.error, first_error))
        .returning(Job.done, Job.total, Job.status, Job.error)
        .execution_options(synchronize_session=False)
    ).one()
    if job.status not in ACTIVE or job.done < job.total:
        return JobStatus(job.status)
    return _finish(session, job_id, job.total, job.error)


def _finish(session: Session, job_id: int, total: int, first_error: str | None) -> JobStatus:
    """Close a job whose items are all finished: failed if any item failed, else succeeded."""
    n_failed = session.scalar(
        select(func.count()).where(JobItem.job_id == job_id, JobItem.status == ItemStatus.FAILED)
    )
    status = JobStatus.FAILED if n_failed else JobStatus.SUCCEEDED
    error = f"{n_failed} of {total} items failed; first: {first_error}" if n_failed else None
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=status, error=error, finished_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return status


def cancel_job(session: Session, job_id: int) -> JobStatus:
    """Cancel an active job: its pending items become cancelled; items in flight finish normally.

    Returns the job's status afterwards (a finished job is left as it is).
    """
    status = session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED, finished_at=func.now())
        .returning(Job.status)
        .execution_options(synchronize_session=False)
    )
    if status is None:
        current = session.scalar(select(Job.status).where(Job.id == job_id))
        if current is None:
            raise LookupError(f"no job {job_id}")
        return JobStatus(current)
    free = (
        select(JobItem.id)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.PENDING)
        .with_for_update(skip_locked=True)
    )
    session.execute(
        update(JobItem)
        .where(JobItem.id.in_(free.scalar_subquery()))
        .values(status=ItemStatus.CANCELLED, finished_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return JobStatus.CANCELLED


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(session: Session, limit: int = 20, status: JobStatus | None = None) -> list[Job]:
    """The newest jobs first, optionally only those in ``status``."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def item_counts(session: Session, job_id: int) -> dict[str, int]:
    """Number of items per status (statuses with no item are omitted)."""
    rows = session.execute(
        select(JobItem.status, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def item_errors(session: Session, job_id: int, limit: int = 10) -> list[tuple[str, str]]:
    """(item key, error) of the first failed items."""
    rows = session.execute(
        select(JobItem.item_key, JobItem.error)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.FAILED)
        .order_by(JobItem.id)
        .limit(limit)
    ).all()
    return [(row.item_key, row.error or "") for row in rows]


def stalled_jobs(session: Session, kinds: Sequence[str]) -> list[tuple[int, str]]:
    """(id, kind) of active jobs of ``kinds`` that have a pending item no worker holds right now.

    Such a job has lost its tasks (a worker died with them, or the submitter died before sending)
    or is still waiting in the queue; sending it one more task is harmless either way. The probe
    locks are released when the caller ends the transaction.
    """
    jobs = session.execute(
        select(Job.id, Job.kind).where(Job.status.in_(ACTIVE), Job.kind.in_(list(kinds))).order_by(Job.id)
    ).all()
    stalled = []
    for job_id, kind in jobs:
        free = session.scalar(
            select(JobItem.id)
            .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.PENDING)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if free is not None:
            stalled.append((job_id, kind))
    return stalled
