"""Benchmark: bulk ingest of a problem file vs a naive row-by-row ORM insert of the same rows.

Each path gets its own fresh database on the admin server (default: the machine's Postgres).
Prints one JSON line ``{"rows", "seconds", "rows_per_s", "naive_seconds", "speedup"}`` where
``seconds`` is the whole ``ingest_file`` call (parse, gold-answer extraction, split assignment,
insert, commit) and ``naive_seconds`` the same parse followed by one ``session.add`` + flush per row.

Usage: ``python bench/ingest.py [FILE] [--dataset gsm8k|math] [--admin-url URL]``
(default FILE: ``../shared/data/gsm8k_train.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db.migrate import upgrade  # noqa: E402
from app.db.models import Problem  # noqa: E402
from app.ingest import assign_split, get_or_create_dataset, ingest_file, parse_jsonl  # noqa: E402

DEFAULT_FILE = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"mycelium_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return name, url


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def bulk(url: str, path: Path, dataset: str) -> tuple[int, float]:
    engine = create_engine(url)
    start = time.perf_counter()
    with Session(engine) as session:
        report = ingest_file(session, path, dataset)
        session.commit()
    seconds = time.perf_counter() - start
    engine.dispose()
    return report.inserted, seconds


def naive(url: str, path: Path, dataset: str) -> tuple[int, float]:
    engine = create_engine(url)
    start = time.perf_counter()
    with Session(engine) as session, path.open(encoding="utf-8") as handle:
        records, errors = parse_jsonl(handle, dataset, str(path))
        if errors:
            raise SystemExit(f"{len(errors)} invalid records, first: {errors[0]}")
        dataset_id = get_or_create_dataset(session, dataset).id
        seen: set[str] = set()
        for record in records:
            if record.content_hash in seen:  # same problem twice in the file
                continue
            seen.add(record.content_hash)
            session.add(Problem(
                dataset_id=dataset_id, external_id=record.external_id, text=record.text,
                gold_answer=record.gold_answer, gold_solution=record.gold_solution, level=record.level,
                subject=record.subject, split=assign_split(record.content_hash, 0.1, 0.1),
                content_hash=record.content_hash,
            ))
            session.flush()
        session.commit()
    seconds = time.perf_counter() - start
    engine.dispose()
    return len(seen), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, nargs="?", default=DEFAULT_FILE)
    parser.add_argument("--dataset", default="gsm8k", choices=["gsm8k", "math"])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results = {}
    for label, run in (("bulk", bulk), ("naive", naive)):
        name, url = fresh_database(args.admin_url)
        try:
            results[label] = run(url, args.file, args.dataset)
        finally:
            drop_database(args.admin_url, name)
    rows, seconds = results["bulk"]
    naive_rows, naive_seconds = results["naive"]
    assert rows == naive_rows, (rows, naive_rows)
    print(json.dumps({
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        "naive_seconds": round(naive_seconds, 3),
        "speedup": round(naive_seconds / seconds, 2),
    }))


if __name__ == "__main__":
    main()
