"""Send job-chunk tasks and resume stalled jobs, given a Celery app.

Imported by ``workers/celery_app.py`` (its worker-start hook resumes stalled jobs) and by
``workers/submit.py``; it imports neither, so the worker modules import one way:
``submit → celery_app → dispatch → jobs/kinds``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery import Celery
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.db.session import database_url
from workers.jobs import record_task_ids, stalled_jobs
from workers.kinds import QUEUES, JobKind, registered_kinds
from workers.sql_broker import prepare_sql_transport

RUN_CHUNK_TASK = "mycelium.run_job_chunk"


def send_chunks(app: Celery, job_id: int, kind: JobKind, limits: Sequence[int | None]) -> list[str]:
    """Send one chunk task per limit (None: drain the job); returns the task ids."""
    task_ids = []
    prepare_sql_transport(app, QUEUES)  # the SQL broker's tables, before kombu races to create them
    with app.connection_for_write() as connection:
        for limit in limits:
            result = app.send_task(
                RUN_CHUNK_TASK, kwargs={"job_id": job_id, "kind": kind.name, "limit": limit}, connection=connection
            )
            task_ids.append(result.id)
    return task_ids


@contextmanager
def unpooled_session() -> Iterator[Session]:
    """A session whose connection is closed at the end (safe in a process that forks afterwards)."""
    engine = create_engine(database_url(), poolclass=NullPool)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def resume_stalled_jobs(app: Celery, queues: Sequence[str]) -> list[int]:
    """Send one draining task to each active job of these queues' kinds that has unclaimed items.

    A duplicate task is harmless (items are claimed, never re-done), so this errs on sending.
    """
    kinds = {name: kind for name, kind in registered_kinds().items() if kind.queue in queues}
    if not kinds:
        return []
    with unpooled_session() as session:
        stalled = stalled_jobs(session, sorted(kinds))
        session.rollback()
        for job_id, kind_name in stalled:
            record_task_ids(session, job_id, send_chunks(app, job_id, kinds[kind_name], [None]))
        session.commit()
    return [job_id for job_id, _kind in stalled]
