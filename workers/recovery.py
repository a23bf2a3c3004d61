"""The lease sweep: finish the jobs of workers that died mid-task, without restarting anything.

A worker SIGKILLed mid-chunk loses its task: Redis redelivers it only after the visibility
timeout (48 h), the SQL transport never. Its items are not lost — the claim's transaction rolls
back, so they are ``pending`` again — but no task is left to claim them while the other workers
have drained their own chunks. Every worker therefore runs a :class:`LeaseSweeper` thread (its
heartbeat; started when the worker is ready) that, every ``MYCELIUM_WORKER_SWEEP_INTERVAL_S``:

1. puts back to ``pending`` every committed ``running`` item whose claim is older than the
   lease (``MYCELIUM_WORKER_LEASE_S``) and that no live transaction holds (``SKIP LOCKED``);
2. sends one draining task to each active job of its queues' kinds that has a pending item and
   has made no progress (no item claimed or finished, not started or created) for a lease.

Nothing is ever done twice: items are claimed under row locks, so a duplicate task only finds
nothing to claim; an item a live worker holds is locked and never released by the sweep. One
sweeper works at a time (a transaction-scoped Postgres advisory lock), and a job is sent at most
one task per lease by each sweeper.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from celery import Celery
from sqlalchemy import and_, exists, func, select, text, update
from sqlalchemy.orm import Session

from app.db.models import ItemStatus, Job, JobItem
from workers.dispatch import send_chunks, unpooled_session
from workers.jobs import ACTIVE, record_task_ids
from workers.kinds import registered_kinds

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key of the sweep ("mycelium lease sweep"); one sweeper at a time.
SWEEP_LOCK_KEY = 0x6D7963_5357


@dataclass
class SweepReport:
    """What one sweep did: claims released, jobs sent a draining task, or skipped (lock held)."""

    released: int = 0
    resent: list[int] = field(default_factory=list)
    skipped: bool = False


def release_expired_claims(session: Session, lease_s: float) -> int:
    """Committed ``running`` items claimed more than ``lease_s`` ago and held by no live
    transaction go back to ``pending``; returns how many."""
    expired = (
        select(JobItem.id)
        .where(
            JobItem.status == ItemStatus.RUNNING,
            JobItem.claimed_at < func.now() - timedelta(seconds=lease_s),
        )
        .with_for_update(skip_locked=True)
    )
    return session.execute(
        update(JobItem)
        .where(JobItem.id.in_(expired.scalar_subquery()))
        .values(status=ItemStatus.PENDING, worker=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def idle_jobs(session: Session, kinds: Sequence[str], lease_s: float) -> list[tuple[int, str]]:
    """(id, kind) of active jobs of ``kinds`` with a pending item and no progress for ``lease_s``.

    Progress is the latest of the job's creation and start and its items' committed claims and
    completions. Nothing is locked, so claimers are never made to skip an item.
    """
    last_item_activity = (
        select(func.max(func.greatest(JobItem.claimed_at, JobItem.finished_at)))
        .where(JobItem.job_id == Job.id)
        .scalar_subquery()
    )
    has_pending = exists().where(and_(JobItem.job_id == Job.id, JobItem.status == ItemStatus.PENDING))
    last_progress = func.greatest(Job.created_at, Job.started_at, last_item_activity)
    rows = session.execute(
        select(Job.id, Job.kind)
        .where(
            Job.status.in_(ACTIVE),
            Job.kind.in_(list(kinds)),
            has_pending,
            last_progress < func.now() - timedelta(seconds=lease_s),
        )
        .order_by(Job.id)
    ).all()
    return [(row.id, row.kind) for row in rows]


def sweep(
    app: Celery, queues: Sequence[str], lease_s: float, recently_resent: dict[int, float] | None = None
) -> SweepReport:
    """One pass of the lease sweep for the kinds of ``queues`` (see the module docstring).

    ``recently_resent`` (job id → ``time.monotonic()`` of its last resend) is kept by the caller
    between passes so a job waiting in a long queue is not sent a task on every pass.
    """
    kinds = {name: kind for name, kind in registered_kinds().items() if kind.queue in queues}
    report = SweepReport()
    if not kinds:
        return report
    memo = recently_resent if recently_resent is not None else {}
    now = time.monotonic()
    with unpooled_session() as session:
        if not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK_KEY}):
            report.skipped = True
            return report
        report.released = release_expired_claims(session, lease_s)
        session.commit()  # released items are visible before a task can go looking for them
        if not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK_KEY}):
            report.skipped = True
            return report
        for job_id, kind_name in idle_jobs(session, sorted(kinds), lease_s):
            if now - memo.get(job_id, float("-inf")) < lease_s:
                continue
            record_task_ids(session, job_id, send_chunks(app, job_id, kinds[kind_name], [None]))
            memo[job_id] = now
            report.resent.append(job_id)
        session.commit()
    for job_id in [j for j, at in memo.items() if now - at > 10 * lease_s]:
        del memo[job_id]
    if report.released or report.resent:
        log.warning(
            "lease sweep: released %s expired claims; re-sent work for idle jobs %s", report.released, report.resent
        )
    return report


class LeaseSweeper:
    """A daemon thread running :func:`sweep` every ``interval_s`` until :meth:`stop`."""

    def __init__(self, app: Celery, queues: Sequence[str], lease_s: float, interval_s: float):
        if lease_s <= 0 or interval_s <= 0:
            raise ValueError(f"lease ({lease_s} s) and sweep interval ({interval_s} s) must be positive")
        self.app, self.queues, self.lease_s, self.interval_s = app, list(queues), lease_s, interval_s
        self.passes = 0
        self._resent: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mycelium-lease-sweep", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sweep(self.app, self.queues, self.lease_s, self._resent)
                self.passes += 1
            except Exception:  # the database may be briefly unreachable; the next pass retries
                log.exception("lease sweep failed")

    def start(self) -> "LeaseSweeper":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)


def start_sweeper(app: Celery, queues: Sequence[str]) -> LeaseSweeper | None:
    """Start the sweeper from the worker settings; ``None`` when the interval is 0 (disabled)."""
    from workers.settings import get_worker_settings

    settings = get_worker_settings()
    if settings.sweep_interval_s <= 0:
        return None
    return LeaseSweeper(app, queues, settings.lease_s, settings.sweep_interval_s).start()
