"""Helpers for tests that need trained specialists: fixture labels, a snapshot, a tiny backbone.

``seed_labels`` ingests the GSM8K fixtures, validates the reference solutions and builds the
C1–C6 labels with the labels pipeline (``app.labels``); ``make_snapshot`` freezes the current
labels of a split; ``train_tiny_specialists`` trains all
six on a tiny random encoder (a few seconds) and returns the loaded
:class:`training.specialists.TrainedSpecialists`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import LabelSnapshot
from app.labels.build import label_fixture_file
from app.labels.snapshot import create_snapshot
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"


def seed_labels(session: Session, path: Path = GSM8K) -> dict[str, Any]:
    """Ingest ``path`` (GSM8K JSONL), validate references and build C1–C6 labels (issue 10); commits."""
    return label_fixture_file(session, path, "gsm8k")


def make_snapshot(session: Session, split: str = "train") -> LabelSnapshot:
    """The snapshot of the split's current labels (issue 10's ``create_snapshot``; flushed)."""
    return create_snapshot(session, split)[0]


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
