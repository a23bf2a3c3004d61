"""Fine-tune the backbone's top layers on the specialists' own tasks, once, before the heads train.

The specialists read frozen token features (:mod:`training.encoder`); a sentence-similarity
encoder such as MiniLM was never taught which number a step reads, and the heads' dev accuracy
stops rising there. This module trains the top ``train_layers`` transformer blocks of the
backbone together with a fresh head per task (C1–C6 losses summed, each task's own collate and
class weights) on the train corpus, picks the epoch by the tasks' mean dev score, and returns the
adapted encoder. The lower blocks and the embeddings stay frozen: no gradient flows through
them, which halves a step's cost on CPU, and features read from them (``layers`` such as 3 of
MiniLM's 6) are unchanged.

The heads trained here are thrown away: the specialists are then trained as usual on frozen
features of the adapted backbone (cached, calibrated, registered), so everything downstream —
encoding caches, artifacts, inference — treats it like any other Hugging Face directory.
Pure training code: records in, a model out; saving and the database live in
:mod:`training.registry`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from training.catalog import SPECIALISTS, TASKS
from training.encoder import Backbone, Encoded
from training.examples import ProblemData
from training.heads import HeadConfig
from training.loop import TrainingError, dev_score, evaluate
from training.tasks import Corpus


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one backbone fine-tuning (hashed into the adapted backbone's name)."""

    epochs: int = 3
    batch_size: int = 16  # problems per step
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: float = 0.06  # fraction of the steps with a rising encoder learning rate
    train_layers: int = 3  # top transformer blocks that learn; the rest stay frozen
    tasks: tuple[str, ...] = SPECIALISTS
    width: int = 128
    head_layers: int = 2
    dropout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:  # JSON gives lists
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise TrainingError(f"fine-tuning tasks {list(self.tasks)}: choose from {', '.join(SPECIALISTS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.train_layers < 1:
            raise TrainingError("fine-tuning needs epochs, batch_size and train_layers ≥ 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """The adapted backbone (best dev epoch restored), per-epoch history and the best dev scores."""

    backbone: Backbone
    history: list[dict[str, Any]]
    best_epoch: int
    dev_scores: dict[str, float]


@dataclass
class LiveCorpus(Corpus):
    """A corpus whose :meth:`states` are the backbone's features of the current batch, computed
    with gradients (``live``: problem index → (T, H) tensor); ``encoded`` carries the offsets."""

    live: dict[int, torch.Tensor] = field(default_factory=dict)

    def states(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.live[i] for i in indices]
        lengths = torch.tensor([len(r) for r in rows])
        states = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, H)
        return states.float(), torch.arange(states.shape[1])[None, :] < lengths[:, None]


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a Hugging Face encoder or decoder (BERT-likes'
    ``encoder.layer``, GPT-2's ``h``, Llama-likes' ``layers``)."""
    for path in ("encoder.layer", "layers", "h", "transformer.h", "model.layers", "transformer.layer"):
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise TrainingError(f"backbone {type(model).__name__}: cannot find its transformer blocks to fine-tune")


def trainable_parameters(backbone: Backbone, train_layers: int) -> list[nn.Parameter]:
    """Freeze the backbone but its top ``train_layers`` blocks; returns the parameters that learn."""
    blocks = transformer_blocks(backbone.model)
    if train_layers > len(blocks):
        raise TrainingError(f"backbone {backbone.directory}: train_layers {train_layers} > its {len(blocks)} blocks")
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    params = [p for block in list(blocks)[len(blocks) - train_layers:] for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def spans_of(backbone: Backbone, texts: Sequence[str], batch_size: int = 256) -> list[Encoded]:
    """Tokenize only: per text an :class:`Encoded` with its TOKEN char offsets and (T, 0) states."""
    out = []
    for start in range(0, len(texts), batch_size):
        _, spans = backbone.tokenize(texts[start:start + batch_size])
        out.extend(Encoded(np.zeros((len(s), 0), np.float16), s, e) for s, e in spans)
    return out


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, pool: int = 20) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort pools of ``pool`` batches by length,
    cut, shuffle the batches (less padding, still random)."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * pool
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk].tolist(), key=lambda i: lengths[i])
        batches.extend(part[k:k + batch_size] for k in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _dev_scores(backbone: Backbone, dev: list[ProblemData], tasks: dict[str, Any]) -> dict[str, float]:
    """Each task's dev score (the checkpoint metric of :mod:`training.loop`) on frozen features of
    the backbone as it is now."""
    backbone.model.eval()
    corpus = Corpus(dev, backbone.encode([r.text for r in dev]))
    scores = {}
    for name, (task, head, maps, _) in tasks.items():
        examples = task.examples(corpus, maps)
        scores[name] = dev_score(task, evaluate(task, head, corpus, examples, maps)) if examples else 0.0
    return scores


def finetune_backbone(backbone: Backbone, train: list[ProblemData], dev: list[ProblemData], config: FinetuneConfig,
                      on_step: Callable[[int, int, float], None] | None = None,
                      on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Fine-tune ``backbone`` (a fresh, unshared :class:`Backbone`; modified in place) on the
    tasks' labels of ``train``; the epoch with the best mean dev score is kept.

    ``on_step(step, steps, loss)`` and ``on_epoch(epoch, entry)`` report progress."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder_params = trainable_parameters(backbone, config.train_layers)
    live = LiveCorpus(train, spans_of(backbone, [r.text for r in train]))
    head_cfg = HeadConfig(hidden_size=backbone.hidden_size, width=config.width, layers=config.head_layers,
                          dropout=config.dropout)
    tasks: dict[str, tuple[Any, nn.Module, dict, dict]] = {}
    by_problem: dict[str, dict[int, list]] = {}
    for name in config.tasks:
        task = TASKS[name]
        maps = task.label_maps(live)
        examples = task.examples(live, maps)
        if not examples:
            continue
        weights = task.loss_weights(task.codes(examples, live, maps), maps)
        tasks[name] = (task, task.build_head(head_cfg, maps), maps, weights)
        grouped: dict[int, list] = {}
        for example in examples:
            grouped.setdefault(example.index, []).append(example)
        by_problem[name] = grouped
    if not tasks:
        raise TrainingError("fine-tuning: the train records hold no labels of the chosen tasks")
    head_params = [p for _, head, _, _ in tasks.values() for p in head.parameters()]
    optimizer = torch.optim.AdamW([
        {"params": encoder_params, "lr": config.encoder_lr},
        {"params": head_params, "lr": config.head_lr},
    ], weight_decay=config.weight_decay)
    lengths = [len(e.starts) for e in live.encoded]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warm = max(1, int(total * config.warmup))

    def encoder_lr_factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        return step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    blocks = transformer_blocks(backbone.model)
    top = list(blocks)[len(blocks) - config.train_layers:]
    best_state = copy.deepcopy([b.state_dict() for b in top])
    best_score, best_epoch, best_scores = -1.0, 0, {}
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(config.epochs):
        backbone.model.train()
        for _, head, _, _ in tasks.values():
            head.train()
        losses: list[float] = []
        for batch in length_batches(lengths, config.batch_size, rng):
            inputs, _ = backbone.tokenize([train[i].text for i in batch])
            states = backbone.features(inputs)  # (B, T, H), gradients through the top blocks
            live.live = {i: states[row, :lengths[i]] for row, i in enumerate(batch)}
            loss = torch.zeros(())
            for name, (task, head, maps, weights) in tasks.items():
                examples = [e for i in batch for e in by_problem[name].get(i, ())]
                if examples:
                    loss = loss + task.loss(head, task.collate(live, examples, maps), weights)
            optimizer.param_groups[0]["lr"] = config.encoder_lr * encoder_lr_factor(step)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(encoder_params + head_params, 1.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, total, losses[-1])
        live.live = {}
        for _, head, _, _ in tasks.values():
            head.eval()
        scores = _dev_scores(backbone, dev, tasks) if dev else {}
        mean = float(np.mean(list(scores.values()))) if scores else -float(np.mean(losses))
        entry = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 4),
                 "dev_scores": {k: round(v, 4) for k, v in scores.items()}, "dev_mean": round(mean, 4)}
        history.append(entry)
        if on_epoch is not None:
            on_epoch(epoch + 1, entry)
        if mean > best_score:
            best_score, best_epoch, best_scores = mean, epoch + 1, scores
            best_state = copy.deepcopy([b.state_dict() for b in top])
    for block, state in zip(top, best_state):
        block.load_state_dict(state)
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    backbone.model.eval()
    return FinetuneResult(backbone, history, best_epoch, best_scores)
