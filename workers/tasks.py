"""Celery tasks: one task type runs a chunk of any job kind (routed to the kind's queue)."""

from __future__ import annotations

from typing import Any

from workers.celery_app import RUN_CHUNK_TASK, app
from workers.runner import TRANSIENT_ERRORS, run_job_items, worker_name
from workers.settings import get_worker_settings

_settings = get_worker_settings()


@app.task(
    name=RUN_CHUNK_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=_settings.retry_backoff_max_s,
    retry_jitter=True,
    max_retries=_settings.max_retries,
)
def run_job_chunk(self: Any, job_id: int, kind: str, limit: int | None) -> dict[str, int | str]:
    """Process up to ``limit`` items of job ``job_id`` (None: until none is left to claim).

    ``kind`` only routes the message. Transient errors retry the task with backoff (the items stay
    pending); on the last attempt they fail the item instead, so a job always finishes.
    """
    last_attempt = self.request.retries >= self.max_retries
    summary = run_job_items(
        job_id, limit=limit, worker=worker_name(self.request.hostname), transient_is_final=last_attempt
    )
    return summary.as_dict()
