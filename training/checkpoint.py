"""A specialist artifact: safetensors weights + ``config.json`` (head config, label maps,
temperatures, metrics, backbone, snapshot hash, training config), saved and loaded together.

Layout of an artifact directory: ``weights.safetensors``, ``config.json``. Its sha256 hashes
both files (names and bytes, sorted), so the registry can tell a complete artifact from a
tampered or half-copied one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from training.catalog import TASKS
from training.heads import HeadConfig
from training.loop import TrainResult

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"


def save_artifact(directory: Path, specialist: str, result: TrainResult, extra: dict[str, Any]) -> None:
    """Write weights and config of a trained specialist into ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in result.head.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    config = {
        "specialist": specialist,
        "head_config": result.head_config.to_dict(),
        "maps": result.maps,
        "temperatures": result.temperatures,
        "metrics": result.metrics,
        **extra,
    }
    (directory / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True))


def artifact_sha256(directory: Path) -> str:
    """sha256 over the artifact's files (sorted names and bytes)."""
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update(name.encode() + b"\0" + (directory / name).read_bytes())
    return digest.hexdigest()


def load_artifact(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The head (eval mode, weights loaded) and the config dict of an artifact directory."""
    config = json.loads((directory / CONFIG).read_text())
    task = TASKS[config["specialist"]]
    head = task.build_head(HeadConfig(**config["head_config"]), config["maps"])
    head.load_state_dict(load_file(str(directory / WEIGHTS)))
    head.eval()
    return head, config
