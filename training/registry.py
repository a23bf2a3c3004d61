"""Thin DB shell of training: read a label snapshot, train, write ``models`` rows.

A specialist version is a ``models`` row written only after its artifact directory
``MYCELIUM_HOME/models/<specialist>/<version>/`` is complete: the artifact is written into a
temporary directory, renamed into place, hashed, and only then the row is inserted (in the
caller's transaction). A process killed at any point leaves no row; a directory left without a
row is replaced by the next training that takes that version. Training the same snapshot with
the same config again returns the existing row (unique specialist × snapshot_hash × config_hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.models import Label, LabelSnapshot, LabelSource, LabelTask, Problem, Split, SpecialistModel
from training.catalog import TASK_CODE_VERSION, TASKS
from training.checkpoint import artifact_sha256, save_artifact
from training.encoder import (
    DEFAULT_BACKBONE_NAME, DEFAULT_MAX_TOKENS, Backbone, backbone_fingerprint, encode_cached, load_backbone,
    resolve_backbone,
)
from training.examples import ProblemData
from training.loop import EpochCallback, TrainConfig, TrainingError, train_task
from training.tasks import Corpus

if TYPE_CHECKING:
    from training.finetune import FinetuneConfig

log = logging.getLogger(__name__)
_VERSION_LOCK_NAMESPACE = 0x6D6D  # "mm"
_SOURCE_RANK = {LabelSource.HUMAN: 0, LabelSource.EXECUTION: 1, LabelSource.TEACHER: 2, LabelSource.MODEL: 3}


@dataclass(frozen=True)
class TrainedModel:
    """What a training call reports per specialist."""

    id: int
    specialist: str
    version: str
    created: bool
    metrics: dict[str, Any]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "specialist": self.specialist, "version": self.version, "created": self.created,
                "metrics": self.metrics, "seconds": round(self.seconds, 2)}


def models_dir() -> Path:
    return get_settings().mycelium_home / "models"


def cache_dir() -> Path:
    return get_settings().mycelium_home / "cache" / "encodings"


# --------------------------------------------------------------------------- reading labels


def _choose(labels: Sequence[Label]) -> dict[int, dict[str, dict]]:
    """Per problem, per task, one payload: human before execution before teacher, then newest."""
    best: dict[tuple[int, str], Label] = {}
    for label in labels:
        key = (label.problem_id, str(label.task))
        current = best.get(key)
        rank = (_SOURCE_RANK.get(label.source, 9), -label.id)
        if current is None or rank < (_SOURCE_RANK.get(current.source, 9), -current.id):
            best[key] = label
    out: dict[int, dict[str, dict]] = {}
    for (problem_id, task), label in best.items():
        out.setdefault(problem_id, {})[task] = label.payload
    return out


def _records(session: Session, payloads: dict[int, dict[str, dict]]) -> list[ProblemData]:
    ids = sorted(payloads)
    texts = dict(session.execute(select(Problem.id, Problem.text).where(Problem.id.in_(ids))).all()) if ids else {}
    return [ProblemData(pid, texts[pid], payloads[pid]) for pid in ids if pid in texts]


def snapshot_records(session: Session, snapshot: LabelSnapshot) -> list[ProblemData]:
    """The snapshot's labels as problems (sorted by id)."""
    if snapshot.split != Split.TRAIN:
        raise TrainingError(f"label snapshot {snapshot.id} is of split {snapshot.split}, training needs a train snapshot")
    labels = session.scalars(select(Label).where(Label.id.in_(snapshot.label_ids or []))).all()
    return _records(session, _choose(labels))


def dev_records(session: Session, train_problem_ids: Sequence[int]) -> list[ProblemData]:
    """Current labels of the ``dev`` problems of the datasets the training problems come from."""
    rows = session.execute(
        text("SELECT id FROM current_labels WHERE problem_id IN (SELECT id FROM problems WHERE split = 'dev' "
             "AND dataset_id IN (SELECT DISTINCT dataset_id FROM problems WHERE id = ANY(:ids)))"),
        {"ids": list(train_problem_ids)},
    ).scalars().all()
    labels = session.scalars(select(Label).where(Label.id.in_(rows))).all() if rows else []
    return _records(session, _choose(labels))


def latest_snapshot(session: Session) -> LabelSnapshot:
    snapshot = session.scalars(
        select(LabelSnapshot).where(LabelSnapshot.split == Split.TRAIN).order_by(LabelSnapshot.id.desc()).limit(1)
    ).first()
    if snapshot is None:
        raise TrainingError("no train label snapshot; build one with `mycelium labels snapshot --split train`")
    return snapshot


def get_snapshot(session: Session, snapshot_id: int | None) -> LabelSnapshot:
    if snapshot_id is None:
        return latest_snapshot(session)
    snapshot = session.get(LabelSnapshot, snapshot_id)
    if snapshot is None:
        raise TrainingError(f"label snapshot {snapshot_id}: no such snapshot")
    return snapshot


# --------------------------------------------------------------------------- training


def training_config(specialist: str, config: TrainConfig, backbone: Backbone) -> dict[str, Any]:
    """The JSON that identifies a training (the snapshot aside): hashed into ``config_hash``."""
    return {
        "specialist": specialist,
        "code_version": TASK_CODE_VERSION + (f".{TASKS[specialist].code_version}" if TASKS[specialist].code_version else ""),
        "train": config.to_dict(),
        "backbone_fingerprint": backbone.fingerprint,
        "max_tokens": backbone.max_tokens,
    }


def config_hash(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def backbone_label(path: str | None, backbone: Backbone) -> str:
    return DEFAULT_BACKBONE_NAME if path in (None, "", "default") else str(backbone.directory)


def find_existing(session: Session, specialist: str, snapshot_hash: str, cfg_hash: str) -> SpecialistModel | None:
    return session.scalars(select(SpecialistModel).where(
        SpecialistModel.specialist == LabelTask(specialist),
        SpecialistModel.snapshot_hash == snapshot_hash,
        SpecialistModel.config_hash == cfg_hash,
    )).first()


def _next_version(session: Session, specialist: str) -> str:
    versions = session.scalars(select(SpecialistModel.version).where(SpecialistModel.specialist == LabelTask(specialist))).all()
    numbers = [int(v[1:]) for v in versions if v.startswith("v") and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def register_artifact(session: Session, specialist: str, staging: Path, row: dict[str, Any]
                      ) -> tuple[SpecialistModel, bool]:
    """Move a complete artifact from ``staging`` to its version directory and insert its row.

    Holds a per-specialist advisory lock until the caller's transaction ends, so concurrent
    trainings get distinct versions. The row is flushed, not committed.
    """
    session.execute(select(func.pg_advisory_xact_lock(_VERSION_LOCK_NAMESPACE, int(specialist[1:]))))
    existing = find_existing(session, specialist, row["snapshot_hash"], row["config_hash"])
    if existing is not None:
        shutil.rmtree(staging, ignore_errors=True)
        return existing, False
    version = _next_version(session, specialist)
    target = models_dir() / specialist / version
    if target.exists():  # left by a process killed between rename and commit: no row names it
        shutil.rmtree(target)
    staging.rename(target)
    model = SpecialistModel(specialist=LabelTask(specialist), version=version, artifact_path=str(target),
                            artifact_sha256=artifact_sha256(target), **row)
    session.add(model)
    session.flush()
    return model, True


def train_specialist(
    session: Session,
    specialist: str,
    *,
    snapshot_id: int | None = None,
    backbone_path: str | None = None,
    config: TrainConfig = TrainConfig(),
    device: str = "auto",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    on_epoch: EpochCallback | None = None,
    corpora: tuple[Corpus, Corpus] | None = None,
) -> TrainedModel:
    """Train one specialist on a train snapshot (dev for early stopping and calibration) and
    register it; an identical earlier training is returned instead (``created`` False).

    ``corpora`` lets a caller that trains several specialists share one (train, dev) encoding.
    """
    started = time.perf_counter()
    if specialist not in TASKS:
        raise TrainingError(f"unknown specialist {specialist!r}")
    snapshot = get_snapshot(session, snapshot_id)
    backbone = load_backbone(backbone_path, device, max_tokens, config.backbone_layers)
    cfg = training_config(specialist, config, backbone)
    cfg_hash = config_hash(cfg)
    existing = find_existing(session, specialist, snapshot.content_hash, cfg_hash)
    if existing is not None:
        return TrainedModel(existing.id, specialist, existing.version, False, existing.metrics, time.perf_counter() - started)
    train, dev = corpora or build_corpora(session, snapshot, backbone)
    result = train_task(TASKS[specialist], train, dev, config, on_epoch=on_epoch)
    metrics = {**result.metrics, "seconds": round(time.perf_counter() - started, 2)}
    result.metrics = metrics
    root = models_dir() / specialist
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        save_artifact(staging, specialist, result, {
            "backbone": {"path": str(backbone.directory), "label": backbone_label(backbone_path, backbone),
                         "fingerprint": backbone.fingerprint, "max_tokens": backbone.max_tokens,
                         "layers": list(backbone.layers)},
            "snapshot_hash": snapshot.content_hash,
            "training_config": cfg,
        })
        model, created = register_artifact(session, specialist, staging, {
            "backbone": backbone_label(backbone_path, backbone),
            "metrics": metrics,
            "snapshot_id": snapshot.id,
            "snapshot_hash": snapshot.content_hash,
            "training_config": cfg,
            "config_hash": cfg_hash,
        })
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return TrainedModel(model.id, specialist, model.version, created, model.metrics, time.perf_counter() - started)


def build_corpora(session: Session, snapshot: LabelSnapshot, backbone: Backbone) -> tuple[Corpus, Corpus]:
    """(train, dev) corpora: the snapshot's problems and the dev problems, encoded (cached)."""
    train_records = snapshot_records(session, snapshot)
    if not train_records:
        raise TrainingError(f"label snapshot {snapshot.id} holds no labels")
    dev = dev_records(session, [r.problem_id for r in train_records])
    encoded = encode_cached(backbone, [r.text for r in train_records + dev], cache_dir())
    return Corpus(train_records, encoded[: len(train_records)]), Corpus(dev, encoded[len(train_records):])


def backbones_dir() -> Path:
    return get_settings().mycelium_home / "backbones"


def finetune_for_snapshot(
    session: Session,
    *,
    snapshot_id: int | None = None,
    backbone_path: str | None = None,
    config: FinetuneConfig | None = None,
    layers: Sequence[int] = (-1,),
    device: str = "auto",
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """Fine-tune the backbone on a train snapshot (:mod:`training.finetune`) and save it as a
    Hugging Face directory ``MYCELIUM_HOME/backbones/<name>-ft-<hash>``; returns (directory, its
    ``finetune.json`` record, created). The hash covers the base backbone's fingerprint, the
    snapshot, the config and the feature layers, so the same request returns the saved directory
    without training. The directory is written under a temporary name and renamed when complete
    (a killed job leaves nothing a later one reads); ``finetune.json`` — which also makes the
    directory's fingerprint differ from the base's — names where it came from."""
    from training.finetune import FinetuneConfig, finetune_backbone

    config = config or FinetuneConfig()
    snapshot = get_snapshot(session, snapshot_id)
    base = resolve_backbone(backbone_path)
    base_fingerprint = backbone_fingerprint(base)
    identity = {"base_fingerprint": base_fingerprint, "snapshot_hash": snapshot.content_hash,
                "finetune": config.to_dict(), "layers": [int(k) for k in layers], "code_version": TASK_CODE_VERSION}
    name = f"{base.name}-ft-{config_hash(identity)[:12]}"
    target = backbones_dir() / name
    if (target / "finetune.json").is_file():
        return target, json.loads((target / "finetune.json").read_text()), False
    train = snapshot_records(session, snapshot)
    if not train:
        raise TrainingError(f"label snapshot {snapshot.id} holds no labels")
    dev = dev_records(session, [r.problem_id for r in train])
    started = time.perf_counter()
    backbone = Backbone(base, device=device, max_tokens=DEFAULT_MAX_TOKENS, layers=layers)
    result = finetune_backbone(backbone, train, dev, config, on_step=on_step, on_epoch=on_epoch)
    record = {**identity, "base": str(base), "snapshot_id": snapshot.id, "train_problems": len(train),
              "dev_problems": len(dev), "best_epoch": result.best_epoch,
              "dev_scores": {k: round(v, 4) for k, v in result.dev_scores.items()}, "history": result.history,
              "seconds": round(time.perf_counter() - started, 1)}
    backbones_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=backbones_dir()))
    try:
        backbone.model.save_pretrained(str(staging), safe_serialization=True)
        backbone.tokenizer.save_pretrained(str(staging))
        (staging / "finetune.json").write_text(json.dumps(record, indent=1, sort_keys=True))
        if target.exists():  # left without finetune.json by a killed rename: incomplete
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("fine-tuned %s on snapshot %s: best epoch %s, dev %s → %s", base.name, snapshot.id,
             result.best_epoch, record["dev_scores"], target)
    return target, record, True


def train_many(
    session_scope: Callable[[], Any],
    specialists: Sequence[str],
    *,
    snapshot_id: int | None = None,
    backbone_path: str | None = None,
    config: TrainConfig = TrainConfig(),
    device: str = "auto",
    on_start: Callable[[str], None] | None = None,
    on_epoch: Callable[[str, int, int, float, float], None] | None = None,
    on_encoded: Callable[[int, float], None] | None = None,
) -> list[TrainedModel]:
    """Train several specialists on one shared encoding, one transaction (commit) per specialist."""
    out = []
    corpora = None
    for specialist in specialists:
        if on_start is not None:
            on_start(specialist)
        with session_scope() as session:
            snapshot = get_snapshot(session, snapshot_id)
            backbone = load_backbone(backbone_path, device, DEFAULT_MAX_TOKENS, config.backbone_layers)
            if corpora is None and find_existing(session, specialist, snapshot.content_hash,
                                                 config_hash(training_config(specialist, config, backbone))) is None:
                encode_started = time.perf_counter()
                corpora = build_corpora(session, snapshot, backbone)
                if on_encoded is not None:
                    on_encoded(len(corpora[0].records) + len(corpora[1].records), time.perf_counter() - encode_started)
            callback = (lambda e, n, loss, score, s=specialist: on_epoch(s, e, n, loss, score)) if on_epoch else None
            out.append(train_specialist(session, specialist, snapshot_id=snapshot.id, backbone_path=backbone_path,
                                        config=config, device=device, on_epoch=callback, corpora=corpora))
    return out


def list_models(session: Session, specialist: str | None = None) -> list[SpecialistModel]:
    query = select(SpecialistModel).order_by(SpecialistModel.specialist, SpecialistModel.id)
    if specialist:
        query = query.where(SpecialistModel.specialist == LabelTask(specialist.upper()))
    return list(session.scalars(query))


def model_summary(model: SpecialistModel) -> dict[str, Any]:
    return {
        "id": model.id, "specialist": str(model.specialist), "version": model.version, "backbone": model.backbone,
        "snapshot_id": model.snapshot_id, "snapshot_hash": model.snapshot_hash, "config_hash": model.config_hash,
        "artifact_path": model.artifact_path, "artifact_sha256": model.artifact_sha256,
        "created_at": model.created_at.isoformat() if model.created_at else None, "metrics": model.metrics,
        "training_config": model.training_config,
    }
