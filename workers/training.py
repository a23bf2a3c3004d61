"""Job kind ``train``: train specialists (one item per specialist id) on the ``gpu`` queue.

Parameters: ``snapshot_id`` (the train label snapshot, resolved at submission), ``backbone``
(a directory or None for the default MiniLM), ``device``, ``config`` (``TrainConfig`` fields),
optionally ``finetune`` (``FinetuneConfig`` fields: the backbone is first adapted on the snapshot —
once; the saved directory is found again by every later item — and the specialists train on it).
An item's result is its ``models`` row, inserted in the runner's transaction after the artifact
is complete on disk: a worker killed mid-training leaves no row, and the item is trained again.
Re-submitting the same job is a no-op (job idempotency), and training the same snapshot + config
in a new job returns the existing versions.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from workers.kinds import JobKind, Params, register


def train_items(session: Session, params: Params) -> list[str]:
    """The specialist ids of the job, in C1..C6 order."""
    from training.catalog import parse_specialists

    return parse_specialists(",".join(params["specialists"]))


def train_process(session: Session, params: Params, keys: Sequence[str]) -> None:
    from training.finetune import FinetuneConfig
    from training.loop import TrainConfig
    from training.registry import finetune_for_snapshot, train_specialist

    config = TrainConfig(**params.get("config", {}))
    backbone = params.get("backbone")
    if params.get("finetune"):
        directory, _, _ = finetune_for_snapshot(session, snapshot_id=params.get("snapshot_id"), backbone_path=backbone,
                                                config=FinetuneConfig(**params["finetune"]),
                                                layers=config.backbone_layers, device=params.get("device", "auto"))
        backbone = str(directory)
    for specialist in keys:
        train_specialist(session, specialist, snapshot_id=params.get("snapshot_id"), backbone_path=backbone,
                         config=config, device=params.get("device", "auto"))


TRAIN = register(
    JobKind(
        name="train",
        queue="gpu",
        version="1",
        list_items=train_items,
        process=train_process,
        batch_size=1,
        chunk_size=6,
        description="Specialist training (C1–C6) from a label snapshot; one models row per item.",
    )
)
