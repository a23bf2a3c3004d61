"""Test-only job kind ``probe``, loaded by test workers through ``MYCELIUM_WORKER_EXTRA_TASK_MODULES``.

A probe item inserts one row into ``probe_results`` (no unique constraint, so a duplicate would
show), then sleeps ``sleep_s`` — a worker killed during the sleep holds an uncommitted row. It
raises ``ValueError`` for the keys listed in ``fail``, and a ``TransientError`` the first time it
meets a key listed in ``transient_once`` (remembered by a marker file in ``marker_dir``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from workers.kinds import JobKind, Params, TransientError, register

PROBE_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS probe_results (
    id serial PRIMARY KEY,
    tag text NOT NULL,
    item_key text NOT NULL,
    pid integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def probe_items(session: Session, params: Params) -> list[str]:
    return [f"{i:03d}" for i in range(int(params["n"]))]


def process_probe(session: Session, params: Params, keys: Sequence[str]) -> None:
    for key in keys:
        if key in params.get("fail", ()):
            raise ValueError(f"probe item {key} fails on purpose")
        if key in params.get("transient_once", ()):
            marker = Path(params["marker_dir"]) / f"{params['tag']}-{key}"
            if not marker.exists():
                marker.touch()
                raise TransientError(f"probe item {key}: try again later")
        session.execute(
            text("INSERT INTO probe_results (tag, item_key, pid) VALUES (:tag, :key, :pid)"),
            {"tag": params["tag"], "key": key, "pid": os.getpid()},
        )
        time.sleep(float(params.get("sleep_s", 0)))


PROBE = register(
    JobKind(
        name="probe",
        queue="cpu",
        version="1",
        list_items=probe_items,
        process=process_probe,
        batch_size=1,
        chunk_size=5,
        description="Test kind: one probe_results row per item, optional sleep and failures.",
    )
)
