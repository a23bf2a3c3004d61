"""Put work on the queue: submit a job (create-or-get, then fan out), run one inline, resume stalled ones.

Work is sent only after the job row has committed; a submitter that dies in between leaves a
queued job that the next worker start resumes (:func:`resume_stalled_jobs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from app.db.session import session_scope
from workers.celery_app import app as celery_app
from workers.dispatch import resume_stalled_jobs, send_chunks, unpooled_session  # noqa: F401  (re-exported)
from workers.jobs import (
    create_or_get_job,
    get_job,
    idempotency_key,
    job_summary,
    record_task_ids,
    reopen_job,
)
from workers.kinds import JobKind, get_kind
from workers.runner import run_job_items, worker_name


@dataclass(frozen=True)
class Submission:
    """The outcome of :func:`submit_job`: the job, whether it is new, how many tasks were sent."""

    id: int
    total: int
    created: bool
    tasks_sent: int
    status: str


@dataclass(frozen=True)
class PreparedJob:
    """A committed job row, and how many of its items still need a worker."""

    id: int
    total: int
    created: bool
    to_run: int
    status: str


def prepare_job(kind: JobKind, params: Mapping[str, Any], item_keys: Sequence[str] | None = None) -> PreparedJob:
    """Create-or-get the job (reopening a failed / cancelled one) and commit it.

    ``item_keys`` default to the kind's enumeration of ``params``.
    """
    with session_scope() as session:
        keys = list(item_keys) if item_keys is not None else kind.list_items(session, params)
        key = idempotency_key(kind.name, params, keys, kind.version)
        job, created = create_or_get_job(session, kind.name, params, keys, key)
        to_run = job.total if created else reopen_job(session, job.id)
        session.refresh(job)
        return PreparedJob(id=job.id, total=job.total, created=created, to_run=to_run, status=str(job.status))


def submit_job(
    kind: str, params: Mapping[str, Any], item_keys: Sequence[str] | None = None, *, app: Celery | None = None
) -> Submission:
    """Submit a job to the workers: one task per ``chunk_size`` items, on the kind's queue.

    Submitting the same job again (same kind, parameters, inputs and code version) returns the
    existing job and sends nothing, unless it had failed or was cancelled: then its unfinished
    items are queued again and its succeeded items are kept.
    """
    job_kind = get_kind(kind)
    job = prepare_job(job_kind, params, item_keys)
    task_ids: list[str] = []
    if job.to_run:
        chunks = math.ceil(job.to_run / job_kind.chunk_size)
        task_ids = send_chunks(app or celery_app, job.id, job_kind, [job_kind.chunk_size] * chunks)
        with session_scope() as session:
            record_task_ids(session, job.id, task_ids)
    return Submission(id=job.id, total=job.total, created=job.created, tasks_sent=len(task_ids), status=job.status)


def run_job_inline(
    kind: str,
    params: Mapping[str, Any],
    item_keys: Sequence[str] | None = None,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Create-or-get the job and process its items in this process; returns its JSON summary.

    The same job table and runner as the workers: an inline run and queued workers can share a job.
    """
    job = prepare_job(get_kind(kind), params, item_keys)
    run_job_items(job.id, limit=None, worker=worker_name("inline"), on_batch=on_batch)
    with session_scope() as session:
        return job_summary(get_job(session, job.id))  # type: ignore[arg-type]
