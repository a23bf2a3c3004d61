"""Helpers for the worker tests: real ``celery worker`` processes, environments, waiting for jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery

REPO_ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("MYCELIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIG_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "MYCELIUM_HOME",
    "MYCELIUM_WORKER_BROKER_KEY_PREFIX",
    "MYCELIUM_WORKER_EXTRA_TASK_MODULES",
)


def clear_settings_caches() -> None:
    from app.config import get_settings
    from app.db.session import reset_engines
    from workers.settings import get_worker_settings

    get_settings.cache_clear()
    get_worker_settings.cache_clear()
    reset_engines()


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the block; restore them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        clear_settings_caches()
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        clear_settings_caches()


def publisher_app(config: Mapping[str, str | None]) -> Celery:
    """A Celery app of this test process configured from ``config`` (resolved now, then frozen)."""
    from workers.celery_app import create_app

    with environment(config):
        app = create_app()
        # Resolve the lazy configuration while ``config`` is in force (broker_url itself is a
        # property that reads CELERY_BROKER_URL from the environment without loading anything).
        assert app.conf.task_default_queue == "cpu"
    return app


class WorkerProcess:
    """A ``celery worker`` subprocess in its own process group (main process and pool children)."""

    def __init__(self, config: Mapping[str, str | None], log_path: Path, queues: str = "cpu", concurrency: int = 1):
        env = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
        env.update({name: value for name, value in config.items() if value is not None})
        env["MYCELIUM_WORKER_EXTRA_TASK_MODULES"] = "tests.workers_kinds"
        env["PYTHONPATH"] = str(REPO_ROOT)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "--queues", queues, "--concurrency", str(concurrency), "--pool", "prefork",
                "--loglevel", os.environ.get("MYCELIUM_TEST_WORKER_LOGLEVEL", "info"), "--hostname", f"test-{log_path.stem}@%h",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the worker logged that it is ready to consume."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not become ready:\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children) at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), escalating to SIGKILL after 20 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def unique_key_prefix(purpose: str) -> str:
    """A Redis key prefix of its own for one broker (see :func:`delete_redis_keys`)."""
    return f"mycelium-{purpose}-{uuid.uuid4().hex[:8]}:"


def delete_redis_keys(prefix: str) -> None:
    """Remove what a test broker left in Redis (binding tables, queues) under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def job_state(job_id: int) -> dict[str, Any]:
    from app.db.session import session_scope
    from workers.jobs import get_job, job_summary

    with session_scope() as session:
        job = get_job(session, job_id)
        assert job is not None, f"no job {job_id}"
        return job_summary(job)


def wait_for(job_id: int, condition: str, timeout: float, worker: WorkerProcess | None = None) -> dict[str, Any]:
    """Poll the job until ``condition`` ("finished" or "done>=N") holds; fail with the worker's log tail."""
    from workers.jobs import FINISHED

    deadline = time.monotonic() + timeout
    while True:
        state = job_state(job_id)
        if condition == "finished":
            reached = state["status"] in {str(s) for s in FINISHED}
        else:
            reached = state["done"] >= int(condition.removeprefix("done>="))
        if reached:
            return state
        if time.monotonic() > deadline:
            tail = worker.log_tail() if worker is not None else ""
            raise AssertionError(f"job {job_id} did not reach {condition} in {timeout} s: {state}\n{tail}")
        time.sleep(0.2)
