"""Benchmark: train the six specialists C1–C6 on GSM8K train (frozen MiniLM-L6, CPU).

Set-up (idempotent, timed separately, not part of the training budget): create and migrate the
database (default ``mycelium_bench`` on the machine's Postgres, kept afterwards so the trained
models stay usable), ingest ``../shared/data/gsm8k_train.jsonl`` (hashed train/dev/test splits),
validate every reference solution, build the C1–C6 labels (``app.labels``) and snapshot the
train split. Then all six specialists are trained from that snapshot — early stopping and
temperature scaling on the dev split, never test — and registered under ``MYCELIUM_HOME``
(default ``/work/bench_home``). A second run on unchanged labels trains nothing (same versions).

Prints one JSON line::

    {"snapshot": {...}, "setup_seconds": s, "encoding": {"problems", "seconds"}, "train_seconds": total,
     "seconds": {specialist: s}, "models": {specialist: {"version", "heads": {head: {accuracy,
     macro_f1, baseline, ece_before, ece_after, temperature}}}}, "model_version": "C1v1…"}

Usage: ``nice -n 10 python bench/training.py [--database-url URL] [--home DIR] [--epochs N] [--specialists C5,C6]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_FILE = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/mycelium_bench"


def ensure_database(url: str) -> None:
    from app.db.migrate import upgrade

    name = url.rsplit("/", 1)[1]
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    upgrade(url)


def set_up(url: str, path: Path) -> dict:
    """Ingest, validate, label and snapshot (each step a no-op when already done)."""
    from app.db.models import Dataset, Problem, Program, ProgramSource
    from app.ingest import ingest_file
    from app.labels.build import build_labels
    from app.labels.snapshot import create_snapshot
    from app.validation import validate_reference

    engine = create_engine(url)
    with Session(engine) as session:
        if not session.scalar(select(Problem.id).limit(1)):
            ingest_file(session, path, "gsm8k")
            session.commit()
        done = set(session.scalars(select(Program.problem_id).where(Program.source == ProgramSource.REFERENCE)))
        # Only this dataset's problems (other datasets stored in the same database, e.g. MATH
        # for evaluation, have no reference programs to validate and would be re-checked each run).
        gsm8k = select(Problem).join(Dataset).where(Dataset.name == "gsm8k").order_by(Problem.id)
        for problem in session.scalars(gsm8k):
            if problem.id not in done:
                validate_reference(session, problem)
        session.commit()
        report = build_labels(session, "gsm8k")
        snapshot, _ = create_snapshot(session, "train", "gsm8k")
        session.commit()
        out = {"id": snapshot.id, "hash": snapshot.content_hash[:12], "counts": snapshot.counts,
               "labels_created": report.get("created")}
    engine.dispose()
    return out


def fine_tune(args: argparse.Namespace, snapshot_id: int, layers: tuple[int, ...]) -> tuple[str, dict]:
    """Fine-tune the backbone on the snapshot (or reuse the saved one); its directory and figures."""
    from app.db.session import session_scope
    from training.finetune import FinetuneConfig
    from training.registry import finetune_for_snapshot

    started = time.perf_counter()

    def on_step(step: int, steps: int, loss: float) -> None:
        if step % 50 == 0 or step == steps:
            print(f"  fine-tune step {step}/{steps}: loss {loss:.3f} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    def on_epoch(epoch: int, entry: dict) -> None:
        print(f"  fine-tune epoch {epoch}: {entry}", file=sys.stderr, flush=True)

    config = FinetuneConfig(epochs=args.finetune_epochs, train_layers=args.finetune_layers)
    with session_scope() as session:
        path, record, created = finetune_for_snapshot(session, snapshot_id=snapshot_id, backbone_path=args.backbone,
                                                      config=config, layers=layers, on_step=on_step, on_epoch=on_epoch)
    figures = {k: record[k] for k in ("best_epoch", "dev_scores", "history", "seconds", "train_problems")}
    return str(path), {"path": str(path), "created": created, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--home", default="/work/bench_home")
    parser.add_argument("--epochs", type=int, default=6, help="Max epochs per specialist (early stopping on dev).")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--specialists", default="all", help="all, or a comma list of C1..C6 to train.")
    parser.add_argument("--backbone-layers", default="3,-1",
                        help="Comma list of backbone hidden states to concatenate (0 embeddings, -1 last). "
                             "Default 3,-1: C3's dev operand accuracy after 2 epochs was 0.626 with -1, "
                             "0.633 with 3,-1 and 0.631 with 2,4,-1.")
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="Fine-tune the backbone's top blocks on the C1-C6 losses for this many epochs "
                             "before the heads train (0: frozen backbone).")
    parser.add_argument("--finetune-layers", type=int, default=3, help="Top transformer blocks that fine-tuning trains.")
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ["MYCELIUM_HOME"] = args.home
    from app.config import get_settings

    get_settings.cache_clear()
    started = time.perf_counter()
    ensure_database(args.database_url)
    snapshot = set_up(args.database_url, args.file)
    setup_seconds = time.perf_counter() - started
    if args.setup_only:
        print(json.dumps({"snapshot": snapshot, "setup_seconds": round(setup_seconds, 1)}))
        return

    from app.db.session import session_scope
    from training.catalog import SPECIALISTS
    from training.loop import TrainConfig
    from training.registry import train_many

    seconds: dict[str, float] = {}
    marks: dict[str, float] = {}

    def on_start(specialist: str) -> None:
        marks[specialist] = time.perf_counter()
        print(f"training {specialist}", file=sys.stderr, flush=True)

    def on_epoch(specialist: str, epoch: int, epochs: int, loss: float, score: float) -> None:
        print(f"  {specialist} epoch {epoch}: loss {loss:.4f} dev {score:.4f} "
              f"({time.perf_counter() - marks[specialist]:.0f} s)", file=sys.stderr, flush=True)

    encoding: dict[str, float] = {}

    def on_encoded(problems: int, secs: float) -> None:
        encoding.update(problems=problems, seconds=round(secs, 1))
        print(f"encoded {problems} problems in {secs:.0f} s", file=sys.stderr, flush=True)

    config = TrainConfig(epochs=args.epochs, backbone_layers=tuple(int(k) for k in args.backbone_layers.split(",")))
    backbone_path, finetune = args.backbone, None
    if args.finetune_epochs > 0:
        backbone_path, finetune = fine_tune(args, snapshot["id"], config.backbone_layers)
    train_started = time.perf_counter()
    chosen = list(SPECIALISTS) if args.specialists == "all" else [s.strip() for s in args.specialists.split(",")]
    models = train_many(session_scope, chosen, snapshot_id=snapshot["id"], backbone_path=backbone_path,
                        config=config, on_start=on_start, on_epoch=on_epoch,
                        on_encoded=on_encoded)
    train_seconds = time.perf_counter() - train_started
    for m in models:
        seconds[m.specialist] = round(m.metrics.get("seconds", m.seconds), 1)
    figures = {
        m.specialist: {
            "version": m.version, "created": m.created,
            "heads": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in head.items()
                             if k in ("accuracy", "macro_f1", "baseline", "ece_before", "ece_after", "ece_after_crossfit",
                                      "ece_floor", "temperature", "n")}
                      for name, head in m.metrics["heads"].items()},
            "best_epoch": m.metrics.get("best_epoch"), "train_examples": m.metrics.get("train_examples"),
            "dev_examples": m.metrics.get("dev_examples"),
        }
        for m in models
    }
    print(json.dumps({
        "snapshot": snapshot, "setup_seconds": round(setup_seconds, 1),
        "encoding": encoding, "finetune": finetune,
        "train_seconds": round(train_seconds, 1), "seconds": seconds, "models": figures,
        "model_version": ".".join(f"{m.specialist}{m.version}" for m in models),
        "database_url": args.database_url, "mycelium_home": args.home,
    }))


if __name__ == "__main__":
    main()
