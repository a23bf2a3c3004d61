"""Process the items of one job: claim a batch, run its kind, commit results and progress together.

Used by the Celery task (a chunk of a job) and by the inline CLI path (the whole job). One batch
is one transaction: claim (row locks), the kind's result rows, the items' final states and the
job's progress commit at once, or — if the process dies — not at all.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.db.models import JobStatus
from app.db.session import session_scope
from workers.jobs import ClaimedItem, claim_items, complete_items, get_job, mark_running
from workers.kinds import JobKind, Params, TransientError, get_kind

log = logging.getLogger(__name__)

# Failures worth retrying the whole task later: the items stay pending (their transaction rolls back).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)
ITEM_ERROR_CHARS = 4000


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_job_items` did."""

    job_id: int
    succeeded: int
    failed: int
    status: str

    def as_dict(self) -> dict[str, int | str]:
        return {"job_id": self.job_id, "succeeded": self.succeeded, "failed": self.failed, "status": self.status}


def worker_name(prefix: str | None = None) -> str:
    """``<prefix or host>/<pid>``: who processed an item (stored in ``job_items.worker``)."""
    return f"{prefix or socket.gethostname()}/{os.getpid()}"


def run_job_items(
    job_id: int,
    *,
    limit: int | None,
    worker: str,
    transient_is_final: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> RunSummary:
    """Process up to ``limit`` (None: all) claimable items of a job, one batch per transaction.

    Stops early when no item is left to claim (all done, held by other workers, or the job was
    cancelled). Transient errors propagate (the caller retries) unless ``transient_is_final``,
    when they fail the item like any other error. ``on_batch`` gets the number of items finished.
    """
    with session_scope() as session:
        job = get_job(session, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        kind = get_kind(job.kind)
        params = dict(job.params)
        mark_running(session, job_id)
    succeeded = failed = 0
    status = JobStatus.RUNNING
    while limit is None or succeeded + failed < limit:
        batch = kind.items_per_batch(params)
        size = batch if limit is None else min(batch, limit - succeeded - failed)
        with session_scope() as session:
            items = claim_items(session, job_id, size, worker)
            if not items:
                break
            ok, errors = _process_batch(session, kind, params, items, transient_is_final)
            status = complete_items(session, job_id, ok, errors)
        succeeded, failed = succeeded + len(ok), failed + len(errors)
        if on_batch is not None:
            on_batch(len(items))
    if status == JobStatus.RUNNING:
        with session_scope() as session:
            status = get_job(session, job_id).status  # type: ignore[union-attr]
    log.info("job %s: %s succeeded, %s failed by %s; job is %s", job_id, succeeded, failed, worker, status)
    return RunSummary(job_id=job_id, succeeded=succeeded, failed=failed, status=str(status))


def _process_batch(
    session: Session, kind: JobKind, params: Params, items: Sequence[ClaimedItem], transient_is_final: bool
) -> tuple[list[int], dict[int, str]]:
    """Run the kind on the whole batch; if it raises, on each item alone, so one bad item fails alone.

    Each attempt runs in a savepoint, so a failed attempt leaves no rows. Returns the ids that
    succeeded and the error text of those that failed.
    """
    try:
        reported = _process_in_savepoint(session, kind, params, [item.key for item in items])
        return _split_outcomes(items, reported)
    except Exception as exc:
        if _must_propagate(exc, transient_is_final):
            raise
        if len(items) == 1:
            return [], {items[0].id: _describe(items[0].key, exc)}
    succeeded: list[int] = []
    failed: dict[int, str] = {}
    for item in items:
        try:
            ok, errors = _split_outcomes([item], _process_in_savepoint(session, kind, params, [item.key]))
        except Exception as exc:
            if _must_propagate(exc, transient_is_final):
                raise
            ok, errors = [], {item.id: _describe(item.key, exc)}
        succeeded += ok
        failed.update(errors)
    return succeeded, failed


def _process_in_savepoint(session: Session, kind: JobKind, params: Params, keys: list[str]) -> Mapping[str, str]:
    with session.begin_nested():
        return kind.process(session, params, keys) or {}


def _split_outcomes(items: Sequence[ClaimedItem], reported: Mapping[str, str]) -> tuple[list[int], dict[int, str]]:
    """Item ids that succeeded, and ``item <key>: <error>`` of those the kind reported as failed."""
    succeeded = [item.id for item in items if item.key not in reported]
    failed = {item.id: f"item {item.key}: {reported[item.key]}" for item in items if item.key in reported}
    return succeeded, failed


def _must_propagate(exc: Exception, transient_is_final: bool) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) and not transient_is_final


def _describe(key: str, exc: BaseException) -> str:
    """``item <key>: <Type>: <message>`` followed by the innermost frames of the traceback."""
    headline = f"item {key}: {type(exc).__name__}: {exc}"
    frames = "".join(traceback.format_exception(exc, limit=-3))
    text = f"{headline}\n{frames}"
    log.warning("%s", headline)
    return text if len(text) <= ITEM_ERROR_CHARS else text[: ITEM_ERROR_CHARS - 1] + "…"
