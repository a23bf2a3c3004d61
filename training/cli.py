"""``mycelium train`` and ``mycelium models list|show``: thin shells over ``training.registry``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.db.schema_check import ensure_schema
from app.errors import UserError

console = Console()
err_console = Console(stderr=True)
models_app = typer.Typer(help="The specialist model registry: list and show trained versions.", no_args_is_help=True)


def train_command(
    specialist: Annotated[str, typer.Option("--specialist", help="all, or a comma list of C1..C6.")] = "all",
    backbone: Annotated[Optional[str], typer.Option(
        "--backbone", help="Hugging Face encoder or causal LM directory (default: the packaged MiniLM-L6).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs (early stopping on dev).")] = 20,
    snapshot: Annotated[Optional[int], typer.Option("--snapshot", help="Label snapshot id (default: latest train).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (training is deterministic per seed).")] = 0,
    backbone_layers: Annotated[str, typer.Option(
        "--backbone-layers", help="Comma list of the backbone's hidden states whose concatenation makes the token "
                                  "features (0 the embeddings, -1 the last layer; bench/training.py uses 3,-1).")] = "-1",
    finetune_epochs: Annotated[int, typer.Option(
        "--finetune-epochs", min=0, help="First fine-tune the backbone's top blocks on the C1–C6 losses for this many "
                                         "epochs (see `mycelium finetune-backbone`); 0 keeps it as it is.")] = 0,
    finetune_layers: Annotated[int, typer.Option("--finetune-layers", min=1,
                                                 help="Top transformer blocks that fine-tuning trains.")] = 3,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    queue: Annotated[bool, typer.Option("--queue", help="Submit a `train` job on the gpu queue instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line {\"models\": [...]}.")] = False,
) -> None:
    """Train specialists from a train label snapshot; dev for early stopping and calibration.

    Frozen backbone (token states encoded once and cached), one small head per specialist; with
    --finetune-epochs the backbone is first adapted once on the same snapshot (saved, reused).
    The same snapshot and settings again return the existing versions (nothing is trained).
    """
    from training.catalog import parse_specialists
    from training.encoder import resolve_backbone
    from training.finetune import FinetuneConfig
    from training.loop import TrainConfig

    try:
        chosen = parse_specialists(specialist)
    except ValueError as exc:
        raise UserError(str(exc), exit_code=2) from None
    backbone_path = None if backbone is None else str(resolve_backbone(backbone))
    layers = _parse_layers(backbone_layers)
    config = TrainConfig(epochs=epochs, seed=seed, backbone_layers=layers)
    finetune = FinetuneConfig(epochs=finetune_epochs, train_layers=finetune_layers, seed=seed) if finetune_epochs else None
    ensure_schema()
    if queue:
        _submit(chosen, backbone_path, config, snapshot, device, finetune)
        return
    _check_ready(backbone_path, device, snapshot, layers)
    if finetune is not None:
        backbone_path = str(_finetune_inline(backbone_path, finetune, layers, snapshot, device, quiet=as_json)[0])
    models = _train_inline(chosen, backbone_path, config, snapshot, device, quiet=as_json)
    if as_json:
        print(json.dumps({"models": [{"specialist": m.specialist, "version": m.version, "created": m.created,
                                      "metrics": m.metrics} for m in models]}))
        return
    _print_trained(models)


def finetune_command(
    backbone: Annotated[Optional[str], typer.Option(
        "--backbone", help="Hugging Face encoder directory to adapt (default: the packaged MiniLM-L6).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs over the snapshot (the best dev epoch is kept).")] = 3,
    train_layers: Annotated[int, typer.Option("--train-layers", min=1, help="Top transformer blocks that learn; the "
                                                                            "embeddings and lower blocks stay frozen.")] = 3,
    backbone_layers: Annotated[str, typer.Option(
        "--backbone-layers", help="The hidden states the specialists will read (pass the same to `mycelium train`).")] = "-1",
    snapshot: Annotated[Optional[int], typer.Option("--snapshot", help="Label snapshot id (default: latest train).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line with the directory and dev scores.")] = False,
) -> None:
    """Fine-tune the backbone's top blocks on the C1–C6 losses of a train snapshot and save it.

    Prints the adapted backbone's directory (under MYCELIUM_HOME/backbones); train the
    specialists on it with `mycelium train --backbone DIR`. The same snapshot and settings again
    return the saved directory without training. On CPU an epoch over 5,888 GSM8K problems takes
    about 7 minutes (MiniLM-L6, 3 blocks).
    """
    from training.finetune import FinetuneConfig

    layers = _parse_layers(backbone_layers)
    config = FinetuneConfig(epochs=epochs, train_layers=train_layers, seed=seed)
    ensure_schema()
    path, record, created = _finetune_inline(backbone, config, layers, snapshot, device, quiet=as_json)
    if as_json:
        print(json.dumps({"path": str(path), "created": created, "best_epoch": record["best_epoch"],
                          "dev_scores": record["dev_scores"]}))
        return
    state = "fine-tuned" if created else "already fine-tuned (same snapshot and settings):"
    console.print(f"{state} {path}\nbest epoch {record['best_epoch']}, dev scores {record['dev_scores']}\n"
                  f"next: mycelium train --backbone {path} --backbone-layers {backbone_layers}",
                  markup=False, highlight=False, soft_wrap=True)


def _parse_layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise UserError(f"--backbone-layers {text!r}: expected a comma list of integers", exit_code=2) from None


def _finetune_inline(backbone: str | None, config, layers: tuple[int, ...], snapshot_id: int | None, device: str,
                     quiet: bool):
    """Fine-tune (or find the saved adaptation) with a progress bar; (directory, record, created)."""
    from app.db.session import session_scope
    from training.registry import finetune_for_snapshot

    progress = Progress(TextColumn("fine-tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=err_console, disable=quiet)
    bar = progress.add_task("steps", total=None, info="")

    def on_step(step: int, steps: int, loss: float) -> None:
        progress.update(bar, completed=step, total=steps, info=f"loss {loss:.3f}")

    def on_epoch(epoch: int, entry: dict) -> None:
        progress.console.print(f"epoch {epoch}: train loss {entry['train_loss']}, dev {entry['dev_scores']}",
                               markup=False, highlight=False)

    with progress, session_scope() as session:
        return finetune_for_snapshot(session, snapshot_id=snapshot_id, backbone_path=backbone, config=config,
                                     layers=layers, device=device, on_step=on_step, on_epoch=on_epoch)


def _check_ready(backbone: str | None, device: str, snapshot_id: int | None, layers: tuple[int, ...]) -> None:
    """Fail with one line before any progress output: the backbone loads and the snapshot exists."""
    from app.db.session import session_scope
    from training.encoder import DEFAULT_MAX_TOKENS, load_backbone
    from training.registry import get_snapshot

    with session_scope() as session:
        get_snapshot(session, snapshot_id)
    load_backbone(backbone, device, DEFAULT_MAX_TOKENS, layers)


def _submit(chosen: list[str], backbone: str | None, config, snapshot_id: int | None, device: str, finetune=None) -> None:
    from app.db.session import session_scope
    from training.registry import get_snapshot
    from workers.submit import submit_job

    with session_scope() as session:
        snapshot = get_snapshot(session, snapshot_id)
        snapshot_id = snapshot.id
    params = {"specialists": chosen, "snapshot_id": snapshot_id, "backbone": backbone, "device": device,
              "config": config.to_dict()}
    if finetune is not None:
        params["finetune"] = finetune.to_dict()
    job = submit_job("train", params, chosen)
    state = "submitted" if job.created else f"already exists ({job.status});"
    console.print(f"train job {job.id} {state} {job.total} specialists on the gpu queue; "
                  f"watch it with `mycelium jobs watch {job.id}`", markup=False, highlight=False, soft_wrap=True)


def _train_inline(chosen, backbone, config, snapshot_id, device, quiet: bool):
    from app.db.session import session_scope
    from training.registry import train_many

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
                        disable=quiet)
    tasks: dict[str, int] = {}

    def on_start(specialist: str) -> None:
        tasks[specialist] = progress.add_task(f"{specialist} epochs", total=config.epochs, info="")

    def on_epoch(specialist: str, epoch: int, epochs: int, loss: float, score: float) -> None:
        progress.update(tasks[specialist], completed=epoch, info=f"loss {loss:.3f} dev {score:.3f}")

    with progress:
        models = train_many(session_scope, chosen, snapshot_id=snapshot_id, backbone_path=backbone, config=config,
                            device=device, on_start=on_start, on_epoch=on_epoch)
        for m in models:
            progress.update(tasks[m.specialist], completed=config.epochs)
    return models


def _headline(metrics: dict) -> str:
    parts = []
    for name, head in (metrics.get("heads") or {}).items():
        parts.append(f"{name}: acc {head['accuracy']:.3f} (base {head['baseline']['accuracy']:.3f}) "
                     f"F1 {head['macro_f1']:.3f} ECE {head['ece_before']:.3f}→{head['ece_after']:.3f}")
    return "; ".join(parts) or "no dev examples"


def _print_trained(models) -> None:
    table = Table("specialist", "version", "new", "dev metrics (vs majority baseline), ECE before→after")
    for m in models:
        table.add_row(m.specialist, m.version, "yes" if m.created else "no (same snapshot + config)", _headline(m.metrics))
    console.print(table)


@models_app.command("list")
def list_command(
    specialist: Annotated[Optional[str], typer.Option("--specialist", help="Only this specialist (C1..C6).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line {\"models\": [...]}.")] = False,
) -> None:
    """Every registered specialist version: backbone, snapshot, dev metrics."""
    from app.db.session import session_scope
    from training.registry import list_models, model_summary

    ensure_schema()
    if specialist and specialist.upper() not in {f"C{i}" for i in range(1, 7)}:
        raise UserError(f"unknown specialist {specialist!r}; choose from C1..C6", exit_code=2)
    with session_scope() as session:
        rows = [model_summary(m) for m in list_models(session, specialist)]
    if as_json:
        print(json.dumps({"models": rows}))
        return
    table = Table("id", "specialist", "version", "backbone", "snapshot", "created", "dev metrics, ECE before→after")
    for r in rows:
        table.add_row(str(r["id"]), r["specialist"], r["version"], r["backbone"], str(r["snapshot_id"]),
                      (r["created_at"] or "")[:19], _headline(r["metrics"]))
    console.print(table)


@models_app.command("show")
def show_command(
    model: Annotated[str, typer.Argument(help="A model id, or SPECIALIST VERSION as C2v1 / C2 v1.")],
    version: Annotated[Optional[str], typer.Argument(help="Version (when MODEL is a specialist id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One model version: artifact, sha256, training config, metrics per head."""
    import re

    from sqlalchemy import select

    from app.db.models import LabelTask, SpecialistModel
    from app.db.session import session_scope
    from training.registry import model_summary

    ensure_schema()
    with session_scope() as session:
        match = re.fullmatch(r"(C[1-6])\s*(v\d+)?", model.upper().replace("V", "v"))
        if model.isdigit():
            row = session.get(SpecialistModel, int(model))
        elif match and (match.group(2) or version):
            wanted = match.group(2) or version
            row = session.scalars(select(SpecialistModel).where(
                SpecialistModel.specialist == LabelTask(match.group(1)), SpecialistModel.version == wanted)).first()
        else:
            raise UserError(f"model {model!r}: give an id or a specialist and version such as C2v1", exit_code=2)
        if row is None:
            raise UserError(f"model {model}{' ' + version if version else ''}: not in the registry; "
                            "list them with `mycelium models list`")
        summary = model_summary(row)
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"{summary['specialist']}{summary['version']} (id {summary['id']}), backbone {summary['backbone']}",
                  markup=False, highlight=False)
    console.print(f"artifact {summary['artifact_path']} sha256 {summary['artifact_sha256']}", markup=False, highlight=False)
    console.print(f"snapshot {summary['snapshot_id']} ({(summary['snapshot_hash'] or '')[:12]}), "
                  f"config {(summary['config_hash'] or '')[:12]}", markup=False, highlight=False)
    metrics = summary["metrics"]
    table = Table("head", "accuracy", "macro-F1", "baseline acc", "baseline F1", "ECE before", "ECE after", "T", "dev n")
    for name, head in (metrics.get("heads") or {}).items():
        table.add_row(name, f"{head['accuracy']:.3f}", f"{head['macro_f1']:.3f}", f"{head['baseline']['accuracy']:.3f}",
                      f"{head['baseline']['macro_f1']:.3f}", f"{head['ece_before']:.3f}", f"{head['ece_after']:.3f}",
                      f"{head['temperature']:.2f}", str(head.get("n", "")))
    console.print(table)
    console.print(f"best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_run')}, "
                  f"{metrics.get('train_examples')} train / {metrics.get('dev_examples')} dev examples, "
                  f"{metrics.get('seconds')} s", markup=False, highlight=False)
