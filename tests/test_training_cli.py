"""`mycelium train` / `mycelium models` through the CLI, and a `train` job on a real gpu-queue worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app
from app.db.models import SpecialistModel
from tests.training_helpers import make_snapshot, seed_labels
from training.tiny import build_tiny_encoder

runner = CliRunner()
SMALL = ["--epochs", "2"]


@pytest.fixture()
def labelled(db_session) -> int:
    seed_labels(db_session)
    snapshot = make_snapshot(db_session)
    db_session.commit()
    return snapshot.id


def test_cli_trains_all_six_then_is_idempotent(db_session, labelled: int, home: Path, tmp_path: Path) -> None:
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    first = runner.invoke(app, ["train", "--specialist", "all", "--backbone", backbone, *SMALL, "--json"])
    assert first.exit_code == 0, first.output
    models = json.loads(first.stdout.strip().splitlines()[-1])["models"]
    assert [(m["specialist"], m["version"], m["created"]) for m in models] == [
        (f"C{i}", "v1", True) for i in range(1, 7)]
    heads = {m["specialist"]: set(m["metrics"]["heads"]) for m in models}
    assert heads == {"C1": {"token"}, "C2": {"op", "next_op"}, "C3": {"operand"}, "C4": {"constant"}, "C5": {"pair"},
                     "C6": {"answer_step", "answer_type", "stop"}}
    for m in models:
        for head in m["metrics"]["heads"].values():
            assert head["n"] > 0 and "ece_after" in head and "accuracy" in head["baseline"]

    again = runner.invoke(app, ["train", "--specialist", "C2,c6", "--backbone", backbone, *SMALL, "--json"])
    assert again.exit_code == 0, again.output
    assert [(m["specialist"], m["version"], m["created"]) for m in json.loads(again.stdout)["models"]] == [
        ("C2", "v1", False), ("C6", "v1", False)]
    assert db_session.scalar(select(func.count()).select_from(SpecialistModel)) == 6

    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["models"]
    assert [(r["specialist"], r["version"], r["snapshot_id"]) for r in rows] == [
        (f"C{i}", "v1", labelled) for i in range(1, 7)]
    assert all(r["backbone"] == str(Path(backbone).resolve()) for r in rows)
    shown = runner.invoke(app, ["models", "show", "C3v1", "--json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["artifact_path"] == str(home / "models" / "C3" / "v1") and len(detail["artifact_sha256"]) == 64
    assert detail["training_config"]["specialist"] == "C3" and detail["training_config"]["train"]["epochs"] == 2
    table = runner.invoke(app, ["models", "show", "C3", "v1"])
    assert table.exit_code == 0 and table.stdout.startswith("C3v1 (id 3)") and "best epoch" in table.stdout
    missing = runner.invoke(app, ["models", "show", "C3v9"])
    assert missing.exit_code == 1 and "C3v9: not in the registry" in missing.output


def test_bad_backbone_is_one_clear_line(db_session, labelled: int, home: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--backbone", str(tmp_path / "nope"), "--json"])
    assert result.exit_code != 0
    assert result.output.strip() == f"error: backbone {tmp_path / 'nope'}: not a directory"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')
    result = runner.invoke(app, ["train", "--backbone", str(broken)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: backbone {broken}: cannot load"), result.output
    unknown = runner.invoke(app, ["train", "--specialist", "C9"])
    assert unknown.exit_code == 2 and "unknown specialist C9" in unknown.output
    assert db_session.scalar(select(func.count()).select_from(SpecialistModel)) == 0


def test_no_snapshot_is_one_clear_line(db_session, home: Path, tmp_path: Path) -> None:
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    result = runner.invoke(app, ["train", "--backbone", backbone])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: no train label snapshot; build one with "
                                     "`mycelium labels snapshot --split train`")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_train_job_on_a_gpu_queue_worker(db_session, database_url: str, labelled: int, home: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.submit
    from tests.workers_harness import REDIS_URL, WorkerProcess, delete_redis_keys, publisher_app, unique_key_prefix, wait_for

    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    prefix = unique_key_prefix("train")
    config = {"DATABASE_URL": database_url, "CELERY_BROKER_URL": REDIS_URL, "MYCELIUM_WORKER_BROKER_KEY_PREFIX": prefix,
              "MYCELIUM_HOME": str(home)}
    monkeypatch.setattr(workers.submit, "celery_app", publisher_app(config))
    worker = WorkerProcess(config, tmp_path / "gpu.log", queues="gpu")
    try:
        # The job first adapts the backbone (once), then trains the six heads on it.
        adapt = ["--finetune-epochs", "1", "--finetune-layers", "1"]
        submitted = runner.invoke(app, ["train", "--queue", "--backbone", backbone, *SMALL, *adapt])
        assert submitted.exit_code == 0, submitted.output
        assert "train job" in submitted.stdout and "mycelium jobs watch" in submitted.stdout
        job_id = int(submitted.stdout.split("train job ")[1].split()[0])
        state = wait_for(job_id, "finished", timeout=600, worker=worker)
        assert (state["status"], state["done"], state["total"]) == ("succeeded", 6, 6), (state, worker.log_tail())
        rows = db_session.scalars(select(SpecialistModel).order_by(SpecialistModel.id)).all()
        assert [(str(r.specialist), r.version, r.snapshot_id) for r in rows] == [
            (f"C{i}", "v1", labelled) for i in range(1, 7)]
        assert all(Path(r.artifact_path).parent.parent == home / "models" for r in rows)
        (adapted,) = {r.backbone for r in rows}
        assert Path(adapted).parent == home / "backbones" and (Path(adapted) / "finetune.json").is_file()
        # The same training inline afterwards finds the worker's backbone and versions: nothing new.
        again = runner.invoke(app, ["train", "--backbone", backbone, *SMALL, *adapt, "--json"])
        assert [m["created"] for m in json.loads(again.stdout)["models"]] == [False] * 6
    finally:
        worker.stop()
        delete_redis_keys(prefix)


def test_cli_finetunes_the_backbone_once_and_explains_bad_settings(db_session, labelled: int, home: Path,
                                                                    tmp_path: Path) -> None:
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    args = ["finetune-backbone", "--backbone", backbone, "--epochs", "1", "--train-layers", "1", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout.strip().splitlines()[-1])
    assert out["created"] and out["best_epoch"] == 1 and Path(out["path"]).parent == home / "backbones"
    assert (Path(out["path"]) / "model.safetensors").is_file() and set(out["dev_scores"]) <= {f"C{i}" for i in range(1, 7)}
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["path"] == out["path"]
    assert not json.loads(again.stdout)["created"]
    too_deep = runner.invoke(app, ["finetune-backbone", "--backbone", backbone, "--train-layers", "5"])
    assert too_deep.exit_code != 0 and "Traceback" not in too_deep.output
    assert too_deep.output.strip().splitlines()[-1].endswith("train_layers 5 > its 2 blocks")
