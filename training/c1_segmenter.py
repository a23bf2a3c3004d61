"""C1 segmenter: problem tokens → P(token lies inside a region some step reads).

Labels: C1 ``{"regions": [[start, end], …]}`` (CHAR offsets); a TOKEN is positive when it
overlaps a region. Head: projection + one self-attention layer + a per-token logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.calibration import binary_logits
from training.examples import IGNORE, C1Example, c1_examples
from training.heads import HeadConfig, TokenContext, TokenProjector
from training.tasks import Corpus, Task, positive_weight


class SegmenterHead(nn.Module):
    """(B, T, H) states → (B, T) logits of "token inside a region"."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.project = TokenProjector(cfg)
        self.context = TokenContext(cfg)
        self.out = nn.Linear(cfg.width, 1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.context(self.project(states), mask)  # (B, T, d)
        return self.out(tokens).squeeze(-1)  # (B, T)


class C1Task(Task):
    name = "C1"

    def examples(self, corpus: Corpus, maps: dict[str, Any]) -> list[C1Example]:
        return c1_examples(corpus.records, corpus.encoded)

    def build_head(self, cfg: HeadConfig, maps: dict[str, Any]) -> nn.Module:
        return SegmenterHead(cfg)

    def collate(self, corpus: Corpus, examples: Sequence[C1Example], maps: dict[str, Any]) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        targets = torch.full(mask.shape, IGNORE, dtype=torch.long)
        for b, e in enumerate(examples):
            targets[b, : len(e.targets)] = torch.from_numpy(e.targets)
        return {"states": states, "mask": mask, "targets": targets}

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        flat = np.concatenate([e.targets for e in examples]) if examples else np.zeros(0, np.int64)
        return {"token": flat[flat != IGNORE]}

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        return {"pos_weight": positive_weight(train_codes["token"])}

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = head(batch["states"], batch["mask"])  # (B, T)
        keep = batch["targets"] != IGNORE
        return F.binary_cross_entropy_with_logits(
            logits[keep], batch["targets"][keep].float(), pos_weight=torch.tensor(weights["pos_weight"])
        )

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = head(batch["states"], batch["mask"])
        keep = batch["targets"] != IGNORE
        return {"token": (binary_logits(logits[keep].numpy()), batch["targets"][keep].numpy())}


def relevance(head: SegmenterHead, states: torch.Tensor, mask: torch.Tensor, temperature: float) -> np.ndarray:
    """(B, T) calibrated P(token inside a region)."""
    return torch.sigmoid(head(states, mask) / temperature).numpy()
