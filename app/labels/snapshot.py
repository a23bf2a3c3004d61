"""Training snapshots: the current labels of one split, frozen and content-hashed (design §4.1).

The content hash is the sha256 of the sorted lines ``problem content_hash \\t task \\t payload``
(payload as canonical JSON: sorted keys, no spaces), one line per (problem, task). So the same
labels give the same hash whatever their ids or order (taking a snapshot again returns the
existing row), and one changed label — a human correction — gives a new hash. Provenance
(source, ids) is not hashed: relabelling the same content is not new training data.

Per (problem, task) the snapshot holds exactly one label: the newest live one (the
``current_labels`` view; parallel live rows are resolved to the newest). Withdrawals are never
included, and a snapshot of one split holds only that split's problems (a ``train`` snapshot
never contains a dev or test problem).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased

from app.db.models import Annotation, Dataset, Label, LabelSnapshot, Problem, Split
from app.errors import UserError
from app.labels.derive import TASKS

__all__ = ["content_hash", "current_split_labels", "create_snapshot", "find_snapshot", "export_snapshot",
           "snapshot_labels"]


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(items: list[tuple[str, str, Any]]) -> str:
    """sha256 hex of ``(problem content hash, task, payload)`` items, order-independent."""
    lines = sorted(f"{problem}\t{task}\t{canonical_json(payload)}" for problem, task, payload in items)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def current_split_labels(session: Session, split: str, dataset: str | None = None,
                         include_unverified: bool = False) -> list[Any]:
    """Newest live label per (problem, task) of a split: rows (id, problem_id, problem_hash, task, payload).

    Human labels from a reviewer's program that did not reproduce the gold answer at import
    (``annotations.verdict.correct`` false; issue 14) are left out unless ``include_unverified``.
    """
    superseding = aliased(Label)
    query = (
        select(Label.id, Label.problem_id, Problem.content_hash.label("problem_hash"), Label.task, Label.payload)
        .join(Problem, Problem.id == Label.problem_id)
        .where(Problem.split == Split(split), Label.is_withdrawal.is_(False),
               ~exists().where(superseding.supersedes_id == Label.id))
        .ext(distinct_on(Label.problem_id, Label.task))
        .order_by(Label.problem_id, Label.task, Label.id.desc())
    )
    if dataset is not None:
        query = query.join(Dataset, Dataset.id == Problem.dataset_id).where(Dataset.name == dataset)
    if not include_unverified:
        query = query.where(~exists().where(
            Annotation.id == Label.annotation_id, Annotation.verdict["correct"].astext == "false"))
    return list(session.execute(query).all())


def create_snapshot(session: Session, split: str, dataset: str | None = None,
                    include_unverified: bool = False) -> tuple[LabelSnapshot, bool]:
    """The snapshot of the split's current labels: ``(row, created)``; an existing row when the
    same content was snapshotted before. Flushes; the caller commits."""
    rows = current_split_labels(session, split, dataset, include_unverified)
    digest = content_hash([(row.problem_hash, str(row.task), row.payload) for row in rows])
    existing = session.scalar(select(LabelSnapshot).where(LabelSnapshot.content_hash == digest))
    if existing is not None:
        return existing, False
    counts: dict[str, dict[str, int]] = {}
    for task in TASKS:
        task_rows = [row for row in rows if str(row.task) == task]
        counts[task] = {"problems": len({row.problem_id for row in task_rows}), "labels": len(task_rows)}
    snapshot = LabelSnapshot(
        split=Split(split),
        content_hash=digest,
        counts=counts,
        label_ids=sorted(row.id for row in rows),
        problem_ids=sorted({row.problem_id for row in rows}),
    )
    session.add(snapshot)
    session.flush()
    return snapshot, True


def find_snapshot(session: Session, key: str) -> LabelSnapshot:
    """A snapshot by id or by content-hash prefix (at least 8 hex chars); UserError if none/ambiguous."""
    if key.isdigit():
        row = session.get(LabelSnapshot, int(key))
        if row is None:
            raise UserError(f"no label snapshot {key}; create one with `mycelium labels snapshot`", exit_code=2)
        return row
    if len(key) < 8:
        raise UserError(f"snapshot {key!r}: give an id or at least 8 chars of its content hash", exit_code=2)
    rows = session.scalars(select(LabelSnapshot).where(LabelSnapshot.content_hash.startswith(key.lower()))).all()
    if len(rows) != 1:
        raise UserError(f"snapshot {key!r}: {'no' if not rows else len(rows)} snapshots match", exit_code=2)
    return rows[0]


def snapshot_labels(session: Session, snapshot: LabelSnapshot) -> list[dict[str, Any]]:
    """The snapshot's labels as dicts (label_id, problem_id, problem_hash, split, task, source,
    program_id, trace_id, annotation_id, payload), ordered by (task, problem id)."""
    rows = session.execute(
        select(Label, Problem.content_hash, Problem.split)
        .join(Problem, Problem.id == Label.problem_id)
        .where(Label.id.in_(list(snapshot.label_ids)))
        .order_by(Label.task, Label.problem_id)
    ).all()
    return [
        {"label_id": label.id, "problem_id": label.problem_id, "problem_hash": problem_hash,
         "split": str(split), "task": str(label.task), "source": str(label.source),
         "program_id": label.program_id, "trace_id": label.trace_id, "annotation_id": label.annotation_id,
         "payload": label.payload}
        for label, problem_hash, split in rows
    ]


def export_snapshot(session: Session, snapshot: LabelSnapshot, out_dir: Path) -> dict[str, Path]:
    """Write ``C1.jsonl`` … ``C6.jsonl`` (one label per line, with the problem text) and
    ``manifest.json`` (id, split, content hash, counts) under ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = snapshot_labels(session, snapshot)
    texts = dict(session.execute(
        select(Problem.id, Problem.text).where(Problem.id.in_(list(snapshot.problem_ids)))
    ).all())
    paths: dict[str, Path] = {}
    handles = {task: (out_dir / f"{task}.jsonl").open("w", encoding="utf-8") for task in TASKS}
    try:
        for label in labels:
            handles[label["task"]].write(canonical_json({**label, "text": texts[label["problem_id"]]}) + "\n")
    finally:
        for task, handle in handles.items():
            handle.close()
            paths[task] = out_dir / f"{task}.jsonl"
    manifest = {"id": snapshot.id, "split": str(snapshot.split), "content_hash": snapshot.content_hash,
                "counts": snapshot.counts, "labels": len(snapshot.label_ids), "problems": len(snapshot.problem_ids),
                "created_at": snapshot.created_at.isoformat() if snapshot.created_at else None}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    paths["manifest"] = out_dir / "manifest.json"
    return paths
