"""``psql "$(mycelium db url)"`` works with the embedded server, and leaves no server behind (issue 17)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from app.db.libpq import libpq_url
from tests.conftest import FIXTURES
from tests.test_embedded import _postmaster_running

ROOT = Path(__file__).resolve().parents[1]


def test_libpq_url() -> None:
    assert libpq_url("postgresql+psycopg://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert libpq_url("postgresql+psycopg://postgres:@/mycelium?host=/x/pgdata") == "postgresql://postgres:@/mycelium?host=/x/pgdata"
    assert libpq_url("postgresql://u@h/db") == "postgresql://u@h/db"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["MYCELIUM_HOME"] = str(home)
    return env


@pytest.mark.slow
def test_db_url_keeps_the_embedded_server_up_for_a_client_then_lets_it_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    run = [sys.executable, "-m", "app.cli"]
    ingested = subprocess.run([*run, "ingest", str(FIXTURES / "gsm8k_sample.jsonl"), "--dataset", "gsm8k"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert ingested.returncode == 0, ingested.stderr

    # what the shell does for psql "$(mycelium db url --linger 3)": read stdout to EOF
    url = subprocess.run([*run, "db", "url", "--linger", "3"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert url.returncode == 0, url.stderr
    assert url.stdout.startswith("postgresql://")
    with psycopg.connect(url.stdout.strip()) as conn:
        time.sleep(4)  # longer than the linger: a connected client keeps the server up
        assert conn.execute("select count(*) from problems").fetchone() == (60,)
    if shutil.which("psql"):
        done = subprocess.run(["psql", url.stdout.strip(), "-Atc", "select count(*) from problems"],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.stdout.strip() == "60", done.stderr
    deadline = time.monotonic() + 30
    while _postmaster_running(home / "pgdata") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _postmaster_running(home / "pgdata"), "the holder left the embedded server running"
