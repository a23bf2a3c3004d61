"""Issue 16, defects 5 and 6: concurrent first-use migrations, and the orphan embedded Postgres.

5. Processes that migrate the same fresh database at once all succeed (an advisory lock
   serialises them); before, one of two died with a unique violation on ``alembic_version``.
6. A holder of the embedded server that is SIGKILLed no longer keeps it up forever: the next
   process prunes the dead PID when it attaches and stops the server when it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import create_database, drop_database

REPO_ROOT = Path(__file__).resolve().parents[1]

_MIGRATE_AFTER_GO = """
import os, sys, time
from app.db.migrate import upgrade
go = sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
upgrade(sys.argv[1])
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


@pytest.mark.timeout(300)
def test_simultaneous_upgrades_of_a_fresh_database_all_succeed(tmp_path: Path) -> None:
    name = f"mycelium_migrate_race_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    go = tmp_path / "go"
    try:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE_AFTER_GO, url, str(go)], cwd=REPO_ROOT, env=_env(),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(3)
        ]
        for process in processes:  # all imported and waiting: then release them at once
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        go.touch()
        results = [(process.wait(timeout=240), process.stderr.read()) for process in processes]  # type: ignore[union-attr]
        assert [code for code, _ in results] == [0, 0, 0], "\n".join(err[-2000:] for _, err in results)
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        engine.dispose()
    finally:
        drop_database(name)


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] in ("postgres", "postmaster") and str(pgdata) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def _mycelium(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO_ROOT, env=_env(MYCELIUM_HOME=str(home)),
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_processes_on_a_fresh_embedded_home_both_migrate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(MYCELIUM_HOME=str(home))
    processes = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=REPO_ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0], "\n".join(err[-2000:] for _, err in results)
    assert not _postmasters(home / "pgdata"), "the embedded server outlived both commands"


_HOLD = """
import sys, time
from pathlib import Path
from app.db.embedded import embedded_server
embedded_server(Path(sys.argv[1]))
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_sigkilled_holder_does_not_leave_an_orphan_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pgdata = home / "pgdata"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(home)], cwd=REPO_ROOT, env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert _postmasters(pgdata)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert holder.pid in json.loads((pgdata / ".handle_pids.json").read_text())  # it never detached

        done = _mycelium(home, "stats", "--json")  # attaches to the orphan, exits cleanly
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while _postmasters(pgdata) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _postmasters(pgdata), "the server outlived the last live holder"
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    finally:
        if holder.poll() is None:
            holder.kill()
        for process in _postmasters(pgdata):  # never leave a server behind, whatever happened
            process.kill()


def test_prune_keeps_live_holders_and_drops_dead_ones(tmp_path: Path) -> None:
    from app.db.embedded import HOLDERS_FILE, prune_dead_holders

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / HOLDERS_FILE
    path.write_text(json.dumps([os.getpid(), dead.pid]))
    assert prune_dead_holders(tmp_path) == [dead.pid]
    assert json.loads(path.read_text()) == [os.getpid()]
    path.write_text("not json")
    assert prune_dead_holders(tmp_path) == [] and path.read_text() == "not json"  # left alone
