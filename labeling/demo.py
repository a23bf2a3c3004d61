"""The demo's last act: a review round whose tasks come from trained (small) specialists.

Labels from the validated reference programs (``app.labels``) → a train snapshot → six small
heads on the frozen MiniLM (a few epochs; ``training.registry.train_many``) → gold-blind
inference on the train pool (``app.inference.store.run_inference``: predictions, candidate
programs) → ``round start`` scores the pool from those outputs → ``review push`` when Label
Studio is configured. Every step is the product's own code path, only smaller.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

log = logging.getLogger("mycelium.demo")

DEMO_TRAIN = {"epochs": 4, "batch_size": 16, "width": 64, "layers": 1, "patience": 2}


def train_demo_specialists(device: str = "cpu", backbone: str | None = None) -> str | None:
    """Build labels, snapshot, train the six specialists and run them on the train pool.

    Returns the pipeline model version, or None (with a logged reason) when nothing could be trained.
    """
    from app.db.models import Problem, Split
    from app.db.session import session_factory, session_scope
    from app.inference.store import run_inference
    from app.labels.build import build_labels
    from app.labels.snapshot import create_snapshot
    from training.loop import TrainConfig
    from training.registry import train_many
    from training.specialists import load_specialists

    session = session_factory()()
    try:
        report: dict[str, Any] = build_labels(session)
        snapshot, _ = create_snapshot(session, "train")
        session.commit()
        snapshot_id = snapshot.id
    finally:
        session.close()
    if not report.get("labelled"):
        log.warning("no problem has all six labels yet: the round is selected from attention regions only")
        return None
    log.info("training six small specialists on label snapshot %s (frozen MiniLM, %s epochs)",
             snapshot_id, DEMO_TRAIN["epochs"])
    train_many(session_scope, ["C1", "C2", "C3", "C4", "C5", "C6"], snapshot_id=snapshot_id,
               backbone_path=backbone, config=TrainConfig(**DEMO_TRAIN), device=device)
    with session_scope() as session:
        specialists = load_specialists(session)
        pool = list(session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))
        solved = run_inference(session, specialists, pool, commit=True)
        log.info("specialists %s ran on %d train problems (the selection pool)", specialists.model_version, solved)
        return specialists.model_version


def infer_pool(session: Any, problem_ids: list[int]) -> str | None:
    """Run the newest specialists on the selection pool (problems already solved by that version
    are skipped); returns the model version, or None when no specialists are trained yet."""
    from app.db.models import SpecialistModel
    from app.inference.store import run_inference
    from training.specialists import load_specialists

    if session.scalar(select(SpecialistModel.id).limit(1)) is None:
        return None
    specialists = load_specialists(session)
    solved = run_inference(session, specialists, problem_ids, commit=True)
    log.info("specialists %s solved %d pool problems (others were stored)", specialists.model_version, solved)
    return specialists.model_version
