"""C4 implicit operations: problem → P(constant c is needed) for each constant of the vocabulary.

Labels: C4 ``{"constants": ["2", "60"]}`` (an empty list is a label). The vocabulary is the
constants seen in ≥ 2 train problems (at most 32). Head: one learned query per constant decoded
over the tokens (label-wise attention) → one logit each; BCE with a sqrt-imbalance pos_weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.calibration import binary_logits
from training.examples import C4Example, c4_examples, constant_vocabulary
from training.heads import HeadConfig, SlotHead
from training.tasks import Corpus, Task, positive_weight


class ImplicitHead(nn.Module):
    """(B, T, H) states → (B, V) logits, one per vocabulary constant."""

    def __init__(self, cfg: HeadConfig, n_constants: int):
        super().__init__()
        self.n_constants = n_constants
        self.queries = SlotHead(cfg, max(n_constants, 1))
        self.out = nn.Linear(cfg.width, 1)
        self.bias = nn.Parameter(torch.zeros(max(n_constants, 1)))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.queries(states, mask)).squeeze(-1) + self.bias  # (B, V)
        return logits[:, : self.n_constants]


class C4Task(Task):
    name = "C4"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"constants": constant_vocabulary(train.records)}

    def examples(self, corpus: Corpus, maps) -> list[C4Example]:
        return c4_examples(corpus.records, maps["constants"])

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return ImplicitHead(cfg, len(maps["constants"]))

    def collate(self, corpus: Corpus, examples: Sequence[C4Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        return {"states": states, "mask": mask, "targets": torch.from_numpy(np.stack([e.targets for e in examples]))}

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        flat = np.concatenate([e.targets for e in examples]) if examples else np.zeros(0)
        return {"constant": flat.astype(np.int64)}

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        return {"pos_weight": positive_weight(train_codes["constant"])}

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = head(batch["states"], batch["mask"])
        if logits.numel() == 0:
            return logits.sum()
        return F.binary_cross_entropy_with_logits(logits, batch["targets"], pos_weight=torch.tensor(weights["pos_weight"]))

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = head(batch["states"], batch["mask"])
        return {"constant": (binary_logits(logits.flatten().numpy()), batch["targets"].flatten().numpy().astype(np.int64))}


def constant_probs(head: ImplicitHead, states: torch.Tensor, mask: torch.Tensor, temperature: float) -> np.ndarray:
    """(B, V) calibrated P(constant needed)."""
    return torch.sigmoid(head(states, mask) / temperature).numpy()
