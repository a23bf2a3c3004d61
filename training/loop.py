"""One training function for every specialist: frozen encodings in, a fitted head out. No I/O.

Adam(W) on the task's class-weighted loss, one pass over shuffled train examples per epoch;
after each epoch the dev metric (mean over the task's heads of macro-F1, accuracy for C3)
selects the checkpoint and stops training after ``patience`` epochs without improvement.
Then each classification head gets a temperature fitted on dev (never test), with ECE before
and after. Deterministic for a given seed (CPU).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.errors import UserError
from training.calibration import calibrate, classification_metrics, majority_baseline
from training.encoder import LAST_LAYER
from training.heads import HeadConfig
from training.tasks import Corpus, Task


class TrainingError(UserError, ValueError):
    """Training cannot proceed (message: one line naming the specialist and the problem)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one specialist training (hashed into the model's config_hash)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 0
    width: int = 128
    layers: int = 2
    dropout: float = 0.1
    backbone_layers: tuple[int, ...] = LAST_LAYER  # hidden states the frozen backbone's features concatenate

    def __post_init__(self) -> None:  # JSON (a job's params) gives a list
        object.__setattr__(self, "backbone_layers", tuple(int(k) for k in self.backbone_layers))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """A fitted head, its label maps, per-head temperatures and the dev metrics."""

    head: nn.Module
    head_config: HeadConfig
    maps: dict[str, Any]
    temperatures: dict[str, float]
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


EpochCallback = Callable[[int, int, float, float], None]  # (epoch, epochs, train loss, dev score)


def _mean_loss(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def evaluate(task: Task, head: nn.Module, corpus: Corpus, examples: list, maps: dict, batch_size: int = 64
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per classification head, dev ``(logits (N, K), y (N,))`` over all ``examples`` (eval mode)."""
    head.eval()
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = task.collate(corpus, examples[start:start + batch_size], maps)
            for name, pair in task.outputs(head, batch).items():
                parts.setdefault(name, []).append(pair)
    out = {}
    for name, pairs in parts.items():
        width = max(p[0].shape[1] for p in pairs)
        logits = np.concatenate([np.pad(p[0], ((0, 0), (0, width - p[0].shape[1])), constant_values=-1e4)
                                 for p in pairs])
        out[name] = (logits, np.concatenate([p[1] for p in pairs]))
    return out


def dev_score(task: Task, outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    scores = [classification_metrics(logits.argmax(1), y)[task.primary] for logits, y in outputs.values() if len(y)]
    return float(np.mean(scores)) if scores else 0.0


def train_task(task: Task, train: Corpus, dev: Corpus, config: TrainConfig,
               on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train ``task``'s head on ``train`` encodings; early-stop, select and calibrate on ``dev``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    maps = task.label_maps(train)
    train_examples = task.examples(train, maps)
    dev_examples = task.examples(dev, maps)
    if not train_examples:
        raise TrainingError(f"{task.name}: the snapshot has no usable {task.name} labels to train on")
    head_config = HeadConfig(hidden_size=int(train.encoded[0].states.shape[1]), width=config.width,
                             layers=config.layers, dropout=config.dropout)
    head = task.build_head(head_config, maps)
    weights = task.loss_weights(task.codes(train_examples, train, maps), maps)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_score, best_state, best_epoch, stale = -1.0, copy.deepcopy(head.state_dict()), -1, 0
    history = []
    for epoch in range(config.epochs):
        head.train()
        losses = []
        order = rng.permutation(len(train_examples))
        for start in range(0, len(order), config.batch_size):
            batch = task.collate(train, [train_examples[i] for i in order[start:start + config.batch_size]], maps)
            loss = task.loss(head, batch, weights)
            if loss.requires_grad:
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                optimizer.step()
            losses.append(float(loss.detach()))
        score = dev_score(task, evaluate(task, head, dev, dev_examples, maps)) if dev_examples else -_mean_loss(losses)
        history.append({"epoch": epoch + 1, "train_loss": _mean_loss(losses), "dev_score": score})
        if on_epoch is not None:
            on_epoch(epoch + 1, config.epochs, _mean_loss(losses), score)
        if score > best_score + 1e-9:
            best_score, best_state, best_epoch, stale = score, copy.deepcopy(head.state_dict()), epoch + 1, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    outputs = evaluate(task, head, dev, dev_examples, maps) if dev_examples else {}
    train_codes = task.baseline_codes(train_examples, train, maps)
    dev_codes = task.baseline_codes(dev_examples, dev, maps) if dev_examples else {}
    temperatures: dict[str, float] = {}
    head_metrics: dict[str, Any] = {}
    for name, (logits, y) in outputs.items():
        calibration = calibrate(logits, y, seed=config.seed)
        temperatures[name] = calibration.pop("temperature")
        head_metrics[name] = {
            **classification_metrics(logits.argmax(1), y),
            "baseline": majority_baseline(train_codes[name], dev_codes[name]),
            **calibration,
            "temperature": temperatures[name],
        }
    for name in task.codes(train_examples[:1], train, maps):
        temperatures.setdefault(name, 1.0)
    metrics = {
        "heads": head_metrics,
        "dev_score": best_score if dev_examples else None,
        "primary": task.primary,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_examples": len(train_examples),
        "dev_examples": len(dev_examples),
    }
    return TrainResult(head, head_config, maps, temperatures, metrics, history)
