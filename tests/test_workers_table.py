"""The job table and runner in-process (no broker): keys, claims, crashes, cancel, reopen, CLI, config."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import tests.workers_kinds  # noqa: F401  (registers the probe kind)
from app.db.models import ItemStatus, Job, JobItem, JobStatus
from app.db.session import session_scope
from tests.workers_kinds import PROBE_TABLE_DDL
from workers import jobs
from workers.kinds import JobKind, register
from workers.runner import run_job_items
from workers.submit import prepare_job, run_job_inline


@pytest.fixture()
def probe_db(db_session: Session) -> Iterator[Session]:
    """The session database with the probe table for the test's duration (schema checks must not see it)."""
    db_session.execute(text(PROBE_TABLE_DDL))
    db_session.commit()
    try:
        yield db_session
    finally:
        db_session.rollback()
        from app.db.session import get_engine

        with get_engine().begin() as conn:
            conn.execute(text("DROP TABLE probe_results"))


def probe_keys(tag: str) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(text("SELECT item_key FROM probe_results WHERE tag = :t ORDER BY item_key"), {"t": tag}))


def new_probe_job(params: dict) -> int:
    from workers.kinds import get_kind

    return prepare_job(get_kind("probe"), params).id


# --------------------------------------------------------------------------- pure parts


def test_idempotency_key_depends_on_kind_params_inputs_and_version_only() -> None:
    key = jobs.idempotency_key("validate", {"dataset": "gsm8k", "split": None}, ["2", "1"], "1")
    assert key == jobs.idempotency_key("validate", {"split": None, "dataset": "gsm8k"}, ["1", "2"], "1")
    assert len(key) == 64
    others = {
        jobs.idempotency_key("extract", {"dataset": "gsm8k", "split": None}, ["1", "2"], "1"),
        jobs.idempotency_key("validate", {"dataset": "math", "split": None}, ["1", "2"], "1"),
        jobs.idempotency_key("validate", {"dataset": "gsm8k", "split": None}, ["1", "3"], "1"),
        jobs.idempotency_key("validate", {"dataset": "gsm8k", "split": None}, ["1", "2"], "2"),
    }
    assert key not in others and len(others) == 4


def test_worker_defaults_follow_the_queues() -> None:
    from workers.cli import WorkerDefaults, worker_defaults

    assert worker_defaults(["gpu", "cpu", "io"], 16) == WorkerDefaults("prefork", 1)
    assert worker_defaults(["cpu"], 16) == WorkerDefaults("prefork", 16)
    assert worker_defaults(["cpu", "io"], 2) == WorkerDefaults("prefork", 2)
    assert worker_defaults(["io"], 16) == WorkerDefaults("threads", 8)


def test_celery_configuration(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    from tests.workers_harness import publisher_app
    from workers.celery_app import broker_transport_options, route_task

    assert route_task("mycelium.run_job_chunk", (), {"job_id": 1, "kind": "validate", "limit": 5}, {}) == {"queue": "cpu"}
    assert route_task("mycelium.run_job_chunk", (), {"job_id": 1, "kind": "extract", "limit": 5}, {}) == {"queue": "gpu"}
    assert route_task("mycelium.labelstudio.sync", (), {}, {}) is None
    assert broker_transport_options("redis://127.0.0.1:6379/0") == {"visibility_timeout": 48 * 3600}
    assert broker_transport_options(f"sqla+{database_url}") == {}  # they would reach create_engine()

    app = publisher_app({"CELERY_BROKER_URL": None, "CELERY_RESULT_BACKEND": None})
    assert app.conf.broker_url == f"sqla+{database_url}"
    assert app.conf.result_backend == f"db+{database_url}"
    assert (app.conf.task_acks_late, app.conf.task_reject_on_worker_lost, app.conf.worker_prefetch_multiplier) == (
        True, True, 1,
    )
    assert sorted(q.name for q in app.conf.task_queues) == ["cpu", "gpu", "io"]
    import kombu.transport.sqlalchemy

    assert kombu.transport.sqlalchemy.Transport.polling_interval == 0.5


# --------------------------------------------------------------------------- job table


def test_create_or_get_returns_one_job_per_key(probe_db: Session) -> None:
    first, created = jobs.create_or_get_job(probe_db, "probe", {"n": 3}, ["a", "b", "c"], "k" * 64)
    again, created_again = jobs.create_or_get_job(probe_db, "probe", {"n": 3}, ["a", "b", "c"], "k" * 64)
    probe_db.commit()
    assert (created, created_again, again.id) == (True, False, first.id)
    assert (again.status, again.total, again.done) == (JobStatus.QUEUED, 3, 0)
    assert probe_db.scalar(select(text("count(*)")).select_from(JobItem)) == 3

    empty, _ = jobs.create_or_get_job(probe_db, "probe", {"n": 0}, [], "e" * 64)
    assert (empty.status, empty.total) == (JobStatus.SUCCEEDED, 0)


def test_concurrent_claims_never_share_an_item(probe_db: Session) -> None:
    job_id = new_probe_job({"n": 40, "tag": "claims"})
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claim_and_hold() -> None:
        with session_scope() as session:
            barrier.wait()
            items = jobs.claim_items(session, job_id, 10, "t")
            claimed.append([item.key for item in items])
            barrier.wait()  # every claimer holds its locks at this point
            session.rollback()

    threads = [threading.Thread(target=claim_and_hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    keys = [key for batch in claimed for key in batch]
    assert sorted(keys) == [f"{i:03d}" for i in range(40)]  # 4 × 10, pairwise disjoint


def test_inline_run_writes_one_result_per_item(probe_db: Session) -> None:
    summary = run_job_inline("probe", {"n": 7, "tag": "inline"})
    assert {k: summary[k] for k in ("kind", "status", "done", "total", "error")} == {
        "kind": "probe", "status": "succeeded", "done": 7, "total": 7, "error": None,
    }
    assert probe_keys("inline") == [f"{i:03d}" for i in range(7)]
    again = run_job_inline("probe", {"n": 7, "tag": "inline"})  # same job: nothing to do
    assert again == summary and probe_keys("inline") == [f"{i:03d}" for i in range(7)]


class Crash(BaseException):
    """Stands for the process dying mid-item (not an Exception: nothing may catch it)."""


def crash_on(keys: Sequence[str]):
    def process(session: Session, params: dict, batch: Sequence[str]) -> None:
        tests.workers_kinds.process_probe(session, params, batch)
        if any(key in keys for key in batch):
            raise Crash()

    return process


def test_a_crash_mid_batch_leaves_no_rows_and_the_item_pending(probe_db: Session) -> None:
    register(JobKind(name="probe-crash", queue="cpu", version="1", list_items=tests.workers_kinds.probe_items,
                     process=crash_on(["002"]), batch_size=2, chunk_size=4))
    from workers.kinds import get_kind

    job_id = prepare_job(get_kind("probe-crash"), {"n": 4, "tag": "crash"}).id
    with pytest.raises(Crash):
        run_job_items(job_id, limit=None, worker="crashing")
    assert probe_keys("crash") == ["000", "001"]  # the first batch committed; 002 + 003 rolled back
    with session_scope() as session:
        statuses = dict(session.execute(select(JobItem.item_key, JobItem.status).where(JobItem.job_id == job_id)).all())
        assert statuses == {"000": ItemStatus.SUCCEEDED, "001": ItemStatus.SUCCEEDED,
                            "002": ItemStatus.PENDING, "003": ItemStatus.PENDING}
        assert session.get(Job, job_id).done == 2

    register(JobKind(name="probe-crash", queue="cpu", version="1", list_items=tests.workers_kinds.probe_items,
                     process=crash_on([]), batch_size=2, chunk_size=4))
    summary = run_job_items(job_id, limit=None, worker="recovering")
    assert (summary.succeeded, summary.status) == (2, "succeeded")
    assert probe_keys("crash") == ["000", "001", "002", "003"]


def test_transient_errors_leave_items_pending_until_the_last_attempt(probe_db: Session, tmp_path) -> None:
    from workers.kinds import TransientError
    from workers.tasks import run_job_chunk

    assert (run_job_chunk.acks_late, run_job_chunk.reject_on_worker_lost, run_job_chunk.max_retries) == (True, True, 5)
    assert TransientError in run_job_chunk.autoretry_for and ValueError not in run_job_chunk.autoretry_for
    assert run_job_chunk.retry_backoff is True

    params = {"n": 2, "tag": "transient", "transient_once": ["000"], "marker_dir": str(tmp_path)}
    job_id = new_probe_job(params)
    with pytest.raises(TransientError):
        run_job_items(job_id, limit=None, worker="w")
    with session_scope() as session:
        assert jobs.item_counts(session, job_id) == {"pending": 2}
    (tmp_path / "transient-000").unlink()
    summary = run_job_items(job_id, limit=None, worker="w", transient_is_final=True)
    assert (summary.succeeded, summary.failed, summary.status) == (1, 1, "failed")
    with session_scope() as session:
        assert jobs.get_job(session, job_id).error == (
            "1 of 2 items failed; first: item 000: TransientError: probe item 000: try again later"
        )


def test_cancel_then_resubmit_resumes_the_rest(probe_db: Session) -> None:
    params = {"n": 6, "tag": "reopen"}
    job_id = new_probe_job(params)
    run_job_items(job_id, limit=2, worker="w")
    with session_scope() as session:
        assert jobs.cancel_job(session, job_id) == JobStatus.CANCELLED
        assert jobs.cancel_job(session, job_id) == JobStatus.CANCELLED  # idempotent
    assert run_job_items(job_id, limit=None, worker="w").succeeded == 0  # a cancelled job claims nothing
    with session_scope() as session:
        assert jobs.item_counts(session, job_id) == {"succeeded": 2, "cancelled": 4}

    from workers.kinds import get_kind

    reopened = prepare_job(get_kind("probe"), params)
    assert (reopened.id, reopened.created, reopened.to_run, reopened.status) == (job_id, False, 4, "queued")
    assert run_job_items(job_id, limit=None, worker="w").status == "succeeded"
    assert probe_keys("reopen") == [f"{i:03d}" for i in range(6)]


# --------------------------------------------------------------------------- CLI


def test_jobs_cli_show_list_watch_cancel(probe_db: Session) -> None:
    from workers.cli import jobs_app

    runner = CliRunner()
    done = run_job_inline("probe", {"n": 3, "tag": "cli"})
    result = runner.invoke(jobs_app, ["show", str(done["id"]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": done["id"], "kind": "probe", "status": "succeeded", "done": 3,
                                         "total": 3, "error": None}
    assert runner.invoke(jobs_app, ["watch", str(done["id"])]).exit_code == 0

    queued = new_probe_job({"n": 3, "tag": "cli-queued"})
    listed = json.loads(runner.invoke(jobs_app, ["list", "--json"]).stdout)
    assert [job["id"] for job in listed] == [queued, done["id"]]
    result = runner.invoke(jobs_app, ["cancel", str(queued)])
    assert result.exit_code == 0 and f"job {queued} cancelled" in result.stdout
    assert runner.invoke(jobs_app, ["watch", str(queued)]).exit_code == 1
    assert runner.invoke(jobs_app, ["show", "999999"]).exit_code == 1
