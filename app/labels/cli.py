"""``mycelium labels build|snapshot|export`` — thin CLI over app.labels.build / app.labels.snapshot."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.errors import UserError

labels_app = typer.Typer(
    help="Specialist labels (C1–C6) from execution-validated programs, and training snapshots.",
    no_args_is_help=True,
)
log = logging.getLogger("mycelium")

_SPLITS = ("train", "dev", "test")


def _check_split(split: str | None) -> None:
    if split is not None and split not in _SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(_SPLITS)}", exit_code=2)


@labels_app.command("build")
def build_command(
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (gsm8k, math); default all.")] = None,
    split: Annotated[Optional[str], typer.Option(help="train / dev / test; default all.")] = None,
    recheck: Annotated[bool, typer.Option("--recheck", help="Derive again even where the live labels "
                                          "already come from the same program (after a code change).")] = False,
    processes: Annotated[int, typer.Option("--processes", help="spaCy worker processes.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line with the counts.")] = False,
) -> None:
    """Append C1–C6 labels (source=execution) for every problem with a validated program.

    Idempotent (a second run appends nothing), all-or-nothing per problem, never supersedes a
    human label. A program whose labels cannot be derived is reported by id (exit code 1) while
    every other problem is labelled.
    """
    from app.db.schema_check import ensure_schema
    from app.db.session import session_factory
    from app.labels.build import build_labels

    _check_split(split)
    ensure_schema()
    session = session_factory()()
    try:
        report = build_labels(session, dataset, split, n_process=processes, recheck=recheck)
        session.commit()
    finally:
        session.close()
    if as_json:
        print(json.dumps(report))
    else:
        created = ", ".join(f"{task}={n}" for task, n in report["created"].items())
        log.info("labels: %d validated problems, %d labelled (%d already up to date); created %s; "
                 "%d unchanged, %d human labels kept", report["problems"], report["labelled"],
                 report["up_to_date"], created, report["unchanged"], report["human_kept"])
    for line in report["errors"]:
        print(f"error: {line}", file=sys.stderr)
    if report["failed"]:
        if report["failed"] > len(report["errors"]):
            print(f"error: … {report['failed'] - len(report['errors'])} more", file=sys.stderr)
        raise typer.Exit(1)


@labels_app.command("snapshot")
def snapshot_command(
    split: Annotated[str, typer.Option(help="train / dev / test.")] = "train",
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset's problems; default all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
) -> None:
    """Freeze the current labels of a split (every task) into a content-hashed snapshot.

    Same labels → same hash → the existing snapshot is returned (created=false).
    """
    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope
    from app.labels.snapshot import create_snapshot

    _check_split(split)
    ensure_schema()
    with session_scope() as session:
        snapshot, created = create_snapshot(session, split, dataset)
        out = {"id": snapshot.id, "split": str(snapshot.split), "content_hash": snapshot.content_hash,
               "created": created, "problems": len(snapshot.problem_ids), "labels": len(snapshot.label_ids),
               "counts": snapshot.counts}
    if as_json:
        print(json.dumps(out))
    else:
        log.info("snapshot %d (%s, %s): %d labels over %d problems%s", out["id"], out["split"],
                 out["content_hash"][:12], out["labels"], out["problems"], "" if created else " (existing)")


@labels_app.command("export")
def export_command(
    snapshot: Annotated[str, typer.Argument(help="Snapshot id or content-hash prefix (≥ 8 chars).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for C1.jsonl … C6.jsonl and manifest.json.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
) -> None:
    """Write a snapshot's labels as JSONL, one file per task (for inspection)."""
    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope
    from app.labels.snapshot import export_snapshot, find_snapshot

    ensure_schema()
    with session_scope() as session:
        row = find_snapshot(session, snapshot)
        files = export_snapshot(session, row, out)
    if as_json:
        print(json.dumps({task: str(path) for task, path in files.items()}))
    else:
        log.info("snapshot %d exported to %s", row.id, out)
