"""Benchmark: validation of the GSM8K train problems by 1 and by 2 worker processes on the Redis broker.

Creates a scratch database on the system Postgres, ingests the file, then validates every problem
(reference solutions → sympy programs → ``programs`` rows) twice from empty tables: queued to one
worker process, then to two. Times run from submission to the job's ``finished_at`` (workers
already up); each configuration runs ``--repeat`` times and the fastest run counts (the machine
is shared). Prints one JSON line:

    {"items": n, "one_worker_s": a, "two_workers_s": b, "speedup": a/b, "overhead_ms_per_task": o}

where o = (a − Σ task run times) / tasks in the one-worker run: the time the queue adds per Celery
task (submission, broker round trip, dispatch, acknowledgement), the run times being Celery's
own "succeeded in" figures from the worker log. Tasks are chunks of 256 problems.

    .venv/bin/python bench/workers.py [--data ../shared/data/gsm8k_train.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

REPO_ROOT = Path(__file__).resolve().parents[1]
# This script's own directory comes first on sys.path, and its name would shadow the package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from sqlalchemy import text  # noqa: E402

from app.db.migrate import upgrade  # noqa: E402
from app.db.session import get_engine, session_scope  # noqa: E402
from tests.conftest import create_database, drop_database, use_database  # noqa: E402
from tests.workers_harness import (  # noqa: E402
    REDIS_URL,
    WorkerProcess,
    delete_redis_keys,
    publisher_app,
    unique_key_prefix,
    wait_for,
)
from workers.submit import submit_job  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_train.jsonl"
PARAMS = {"dataset": "gsm8k"}
TASK_RUN_TIME = re.compile(r"Task mycelium\.run_job_chunk\[[^]]+\] succeeded in ([0-9.]+)s")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ingest(path: Path) -> int:
    from app.ingest import ingest_file

    with session_scope() as session:
        report = ingest_file(session, path, "gsm8k")
    return report.inserted


def empty_results() -> None:
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE programs, job_items, jobs RESTART IDENTITY CASCADE"))


def correct_programs() -> int:
    with session_scope() as session:
        return int(session.scalar(text("SELECT count(*) FROM programs WHERE source = 'reference' AND correct")))


def finished_at(job_id: int) -> float:
    """The job's ``finished_at`` as a Unix time (the database runs on this machine's clock)."""
    with session_scope() as session:
        return float(session.scalar(text("SELECT extract(epoch FROM finished_at) FROM jobs WHERE id = :id"), {"id": job_id}))


def task_run_times(worker: WorkerProcess) -> list[float]:
    return [float(seconds) for seconds in TASK_RUN_TIME.findall(worker.log_path.read_text(errors="replace"))]


def queued_run(n_workers: int, database_url: str, logs: Path) -> tuple[float, int, float]:
    """Seconds from submission to the job's end with ``n_workers`` single-process workers;
    tasks sent; seconds spent inside tasks (all workers)."""
    prefix = unique_key_prefix("bench")
    config = {"DATABASE_URL": database_url, "CELERY_BROKER_URL": REDIS_URL, "MYCELIUM_WORKER_BROKER_KEY_PREFIX": prefix}
    empty_results()
    run = uuid.uuid4().hex[:6]
    workers = [WorkerProcess(config, logs / f"{run}-{i}.log") for i in range(n_workers)]
    try:
        for worker in workers:
            worker.wait_ready()
        app = publisher_app(config)
        started = time.time()
        submission = submit_job("validate", PARAMS, app=app)
        state = wait_for(submission.id, "finished", timeout=1800, worker=workers[0])
        elapsed = finished_at(submission.id) - started
    finally:
        for worker in workers:
            worker.stop()
        delete_redis_keys(prefix)
    assert state["status"] == "succeeded" and state["done"] == state["total"], state
    run_times = [seconds for worker in workers for seconds in task_run_times(worker)]
    assert len(run_times) == submission.tasks_sent, (len(run_times), submission.tasks_sent)
    log(f"{n_workers} worker(s): {elapsed:.2f} s for {state['total']} items in {submission.tasks_sent} tasks "
        f"({sum(run_times):.2f} s inside tasks), {correct_programs()} correct reference programs")
    return elapsed, submission.tasks_sent, sum(run_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K train JSONL")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per configuration; the fastest counts.")
    args = parser.parse_args()

    name = f"mycelium_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        upgrade(url)
        use_database(url)
        items = ingest(args.data)
        log(f"ingested {items} problems into {name}")
        with TemporaryDirectory() as logs:
            one_s, tasks, inside_s = min(queued_run(1, url, Path(logs)) for _ in range(args.repeat))
            two_s, _, _ = min(queued_run(2, url, Path(logs)) for _ in range(args.repeat))
    finally:
        use_database(None)
        drop_database(name)
    print(json.dumps({
        "items": items,
        "one_worker_s": round(one_s, 3),
        "two_workers_s": round(two_s, 3),
        "speedup": round(one_s / two_s, 3),
        "overhead_ms_per_task": round((one_s - inside_s) / tasks * 1000, 3),
    }))


if __name__ == "__main__":
    main()
