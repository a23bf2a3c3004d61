"""Issue 16, defect 4: a worker SIGKILLed while another keeps running no longer stalls its job.

The workers' lease sweep (``workers.recovery``) re-sends work for a job that has unclaimed items
and no progress for a lease, and releases committed claims past the lease that no live
transaction holds — so the job finishes without a restart, each item processed exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

import tests.workers_kinds  # noqa: F401  (registers the probe kind in this process too)
from app.db.models import ItemStatus, Job, JobItem
from app.db.session import session_scope
from tests.conftest import migrated_database
from tests.workers_harness import (
    REDIS_URL,
    WorkerProcess,
    delete_redis_keys,
    job_state,
    publisher_app,
    unique_key_prefix,
    wait_for,
)
from tests.workers_kinds import PROBE_TABLE_DDL
from workers import recovery
from workers.jobs import claim_items, create_or_get_job, idempotency_key

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def recovery_db() -> Iterator[str]:
    from app.db.session import get_engine

    with migrated_database("mycelium_recovery") as url:
        with get_engine().begin() as conn:
            conn.execute(text(PROBE_TABLE_DDL))
        yield url


@pytest.fixture()
def no_jobs_left(recovery_db: str) -> Iterator[None]:
    """The unit tests' jobs are deleted afterwards, so no worker later finds them idle."""
    yield
    with session_scope() as session:
        session.execute(text("DELETE FROM jobs"))


def _new_job(n: int) -> int:
    params = {"n": n, "tag": uuid.uuid4().hex}
    keys = [f"{i:03d}" for i in range(n)]
    with session_scope() as session:
        job, _ = create_or_get_job(session, "probe", params, keys, idempotency_key("probe", params, keys, "1"))
        return job.id


def _age(job_id: int, seconds: float) -> None:
    """Pretend everything about the job happened ``seconds`` ago."""
    with session_scope() as session:
        ago = func.now() - text(f"interval '{float(seconds)} seconds'")
        session.execute(update(Job).where(Job.id == job_id).values(created_at=ago, started_at=ago))
        session.execute(
            update(JobItem)
            .where(JobItem.job_id == job_id, JobItem.claimed_at.is_not(None))
            .values(claimed_at=ago)
        )


def _statuses(job_id: int) -> list[str]:
    with session_scope() as session:
        return sorted(str(s) for s in session.scalars(select(JobItem.status).where(JobItem.job_id == job_id)))


def test_sweep_resends_only_idle_jobs_and_releases_only_dead_claims(
    no_jobs_left: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(recovery, "send_chunks", lambda app, job_id, kind, limits: sent.append(job_id) or ["t"])
    fresh, idle, orphaned, busy = _new_job(3), _new_job(3), _new_job(2), _new_job(1)
    for job_id in (orphaned, busy):  # claims committed as 'running' (a worker that died, or a slow one)
        with session_scope() as session:
            claim_items(session, job_id, 2, "w/1")
    for job_id in (idle, orphaned, busy):
        _age(job_id, 120)

    with session_scope() as live:  # live workers: one holds an item of `idle`, one the old claim of `busy`
        assert claim_items(live, idle, 1, "live/2")
        live.execute(select(JobItem.id).where(JobItem.job_id == busy).with_for_update()).all()
        report = recovery.sweep(object(), ["cpu"], lease_s=60)  # type: ignore[arg-type]
        live.rollback()
    assert report.released == 2 and not report.skipped  # orphaned's two, not busy's held one
    assert sorted(report.resent) == [idle, orphaned] and sent == report.resent
    assert _statuses(orphaned) == ["pending", "pending"]
    assert _statuses(busy) == ["running"]
    assert _statuses(fresh) == ["pending"] * 3

    memo: dict[int, float] = {}
    first = recovery.sweep(object(), ["cpu"], 60, memo)  # type: ignore[arg-type]
    assert first.released == 1 and first.resent == [idle, orphaned, busy]  # busy's claim is free now
    assert recovery.sweep(object(), ["cpu"], 60, memo).resent == []  # type: ignore[arg-type]  # once a lease
    assert recovery.sweep(object(), ["gpu"], 60).resent == []  # type: ignore[arg-type]  # other queues' kinds


def test_only_one_sweeper_at_a_time(no_jobs_left: None) -> None:
    with session_scope() as session:
        assert session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": recovery.SWEEP_LOCK_KEY})
        assert recovery.sweep(object(), ["cpu"], 60).skipped  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killing_one_of_two_workers_mid_job_still_finishes_the_job(recovery_db: str, tmp_path: Path) -> None:
    """20 items in chunks of 5 on two workers; one is SIGKILLed mid-chunk and never restarted.
    Its task is gone (Redis gives it back only after 48 h); the survivor's sweep finishes the job."""
    from workers.submit import submit_job

    prefix = unique_key_prefix("recovery")
    config: dict[str, Any] = {
        "DATABASE_URL": recovery_db,
        "CELERY_BROKER_URL": REDIS_URL,
        "MYCELIUM_WORKER_BROKER_KEY_PREFIX": prefix,
        "MYCELIUM_WORKER_LEASE_S": "3",
        "MYCELIUM_WORKER_SWEEP_INTERVAL_S": "1",
    }
    app = publisher_app(config)
    params = {"n": 20, "tag": f"kill2-{uuid.uuid4().hex[:6]}", "sleep_s": 0.4}
    first = WorkerProcess(config, tmp_path / "first.log")
    second = WorkerProcess(config, tmp_path / "second.log")
    try:
        first.wait_ready()
        second.wait_ready()
        submission = submit_job("probe", params, app=app)
        wait_for(submission.id, "done>=4", 60, first)
        first.kill()  # mid-item; its chunk's task is lost with it
        killed_at = job_state(submission.id)
        assert killed_at["status"] == "running" and killed_at["done"] < 20
        started = time.monotonic()
        state = wait_for(submission.id, "finished", 90, second)
        print(f"killed at done={killed_at['done']}/20; the survivor finished the job "
              f"{time.monotonic() - started:.1f} s later without a restart")
        assert (state["status"], state["done"], state["total"]) == ("succeeded", 20, 20)
        with session_scope() as session:
            rows = dict(session.execute(
                text("SELECT item_key, count(*) FROM probe_results WHERE tag = :tag GROUP BY item_key"),
                {"tag": params["tag"]},
            ).all())
            items = session.execute(
                select(JobItem.status, JobItem.attempts).where(JobItem.job_id == submission.id)
            ).all()
        assert rows == {f"{i:03d}": 1 for i in range(20)}  # exactly one result per item
        assert {(str(s), a) for s, a in items} == {("succeeded", 1)}
        assert second.process.poll() is None  # the survivor was never restarted
        assert "lease sweep" in second.log_path.read_text(errors="replace")
    finally:
        first.kill()
        second.stop()
        delete_redis_keys(prefix)
