"""Helpers for tests that need trained specialists: fixture labels, a snapshot, a tiny backbone.

``seed_labels`` ingests the GSM8K fixtures and writes C1–C6 labels (source=execution) derived
from the validated reference programs in the learning contract's payload shapes;
``make_snapshot`` freezes the current labels of a split; ``train_tiny_specialists`` trains all
six on a tiny random encoder (a few seconds) and returns the loaded
:class:`training.specialists.TrainedSpecialists`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db.models import Label, LabelSnapshot, LabelSource, LabelTask, Problem, Split
from app.execution.validate import validate_solution
from app.ingest import ingest_file
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"


def answer_type(gold: str) -> str:
    gold = gold.strip().replace(",", "")
    if re.fullmatch(r"\d+", gold):
        return "integer"
    if re.fullmatch(r"-\d+(\.\d+)?", gold):
        return "negative"
    if re.fullmatch(r"\d*\.\d+", gold):
        return "decimal"
    if re.fullmatch(r"\d+/\d+", gold):
        return "fraction"
    return "text"


def payloads_from_program(program: dict[str, Any], gold_answer: str) -> dict[str, dict[str, Any]]:
    """C1–C6 payloads of one validated program (contract shapes; C1 = the operand spans)."""
    steps = program["steps"]
    spans = sorted({(o["start"], o["end"]) for s in steps for o in s["operands"] if o["kind"] == "problem"})
    edges = sorted({(o["ref"], s["id"]) for s in steps for o in s["operands"] if o["kind"] == "step"})
    constants = sorted({o["value"] for s in steps for o in s["operands"] if o["kind"] == "constant"})
    return {
        "C1": {"regions": [list(p) for p in spans], "operand_spans": [list(p) for p in spans]},
        "C2": {"steps": [{"step": s["id"], "op": s["op"], "region": None} for s in steps]},
        "C3": {"steps": [{"step": s["id"], "op": s["op"], "operands": [
            {k: v for k, v in o.items() if k in ("kind", "start", "end", "value", "reading", "ref")}
            for o in s["operands"]]} for s in steps]},
        "C4": {"constants": constants},
        "C5": {"n_steps": len(steps), "edges": [list(e) for e in edges]},
        "C6": {"answer_step": program["answer_step"], "n_steps": len(steps), "answer_type": answer_type(gold_answer)},
    }


def seed_labels(session: Session, path: Path = GSM8K) -> int:
    """Ingest ``path`` (GSM8K JSONL) and write derived C1–C6 labels; returns the labelled problems."""
    ingest_file(session, path, "gsm8k")
    session.flush()
    labelled = 0
    for problem in session.scalars(select(Problem).order_by(Problem.id)):
        result = validate_solution(problem.text, problem.gold_solution or "", problem.gold_answer, "gsm8k")
        if not result.correct or not result.program or not result.program.get("steps"):
            continue
        for task, payload in payloads_from_program(result.program, problem.gold_answer).items():
            session.add(Label(problem_id=problem.id, task=LabelTask(task), payload=payload, source=LabelSource.EXECUTION))
        labelled += 1
    session.flush()
    return labelled


def make_snapshot(session: Session, split: Split = Split.TRAIN) -> LabelSnapshot:
    """Freeze the current labels of ``split`` (content-hashed; same labels → the same row)."""
    rows = session.execute(text(
        "SELECT l.id, l.problem_id, l.task::text, l.payload, p.content_hash FROM current_labels l "
        "JOIN problems p ON p.id = l.problem_id WHERE p.split = :split ORDER BY p.content_hash, l.task, l.id"
    ), {"split": str(split)}).all()
    digest = hashlib.sha256(json.dumps([[r[4], r[2], r[3]] for r in rows], sort_keys=True).encode()).hexdigest()
    existing = session.scalars(select(LabelSnapshot).where(LabelSnapshot.content_hash == digest)).first()
    if existing is not None:
        return existing
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r[2], {"labels": 0})["labels"] += 1
    snapshot = LabelSnapshot(split=split, content_hash=digest, counts=counts, label_ids=[r[0] for r in rows],
                             problem_ids=sorted({r[1] for r in rows}))
    session.add(snapshot)
    session.flush()
    return snapshot


def tiny_train_config(epochs: int = 2):
    from training.loop import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=16, width=32, layers=1, patience=2)


def train_tiny_specialists(session: Session, backbone_dir: Path, epochs: int = 2):
    """Seed labels + a train snapshot when there is none, train all six on the tiny encoder
    (``MYCELIUM_HOME`` must point at a scratch directory), commit, and load them."""
    from training.registry import train_specialist
    from training.specialists import load_specialists
    from training.tiny import build_tiny_encoder

    if session.scalar(select(LabelSnapshot.id).limit(1)) is None:
        seed_labels(session)
        make_snapshot(session)
        session.commit()
    build_tiny_encoder(backbone_dir)
    for specialist in ("C1", "C2", "C3", "C4", "C5", "C6"):
        train_specialist(session, specialist, backbone_path=str(backbone_dir), config=tiny_train_config(epochs),
                         device="cpu")
    session.commit()
    return load_specialists(session)
