"""C5 dependency: slot pair (i, j), i < j → P(step j consumes step i's result).

Labels: C5 ``{"n_steps": n, "edges": [[i, j], …]}`` (1-based step ids). Training pairs are
i < j < n_steps of the labelled program. Head: slot queries decoded over the tokens, a bilinear
pair score plus a learned bias per slot distance; BCE with a sqrt-imbalance pos_weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import MAX_STEPS
from training.calibration import binary_logits
from training.examples import C5Example, c5_examples
from training.heads import HeadConfig, SlotHead
from training.tasks import Corpus, Task, positive_weight


class DependencyHead(nn.Module):
    """(B, T, H) states → (B, K, K) logits; entry [i, j] scores "j consumes i" (use i < j)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.slots = SlotHead(cfg, MAX_STEPS)
        self.source = nn.Linear(cfg.width, cfg.width)
        self.target = nn.Linear(cfg.width, cfg.width)
        self.distance = nn.Parameter(torch.zeros(MAX_STEPS))
        self.scale = cfg.width ** -0.5

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        slots = self.slots(states, mask)  # (B, K, d)
        scores = self.source(slots) @ self.target(slots).transpose(1, 2) * self.scale  # (B, K, K)
        idx = torch.arange(MAX_STEPS)
        gap = (idx[None, :] - idx[:, None]).clamp(min=0)  # (K, K) j - i
        return scores + self.distance[gap]


def pair_mask(n_steps: Sequence[int]) -> torch.Tensor:
    """(B, K, K) bool: the pairs i < j < n_steps."""
    idx = torch.arange(MAX_STEPS)
    upper = idx[:, None] < idx[None, :]
    n = torch.tensor(list(n_steps))[:, None, None]
    return upper[None] & (idx[None, None, :] < n)


class C5Task(Task):
    name = "C5"

    def examples(self, corpus: Corpus, maps) -> list[C5Example]:
        return c5_examples(corpus.records)

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return DependencyHead(cfg)

    def collate(self, corpus: Corpus, examples: Sequence[C5Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        return {"states": states, "mask": mask, "edges": torch.from_numpy(np.stack([e.edges for e in examples])),
                "pairs": pair_mask([e.n_steps for e in examples])}

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        if not examples:
            return {"pair": np.zeros(0, np.int64)}
        pairs = pair_mask([e.n_steps for e in examples]).numpy()
        return {"pair": np.stack([e.edges for e in examples])[pairs].astype(np.int64)}

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        return {"pos_weight": positive_weight(train_codes["pair"])}

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = head(batch["states"], batch["mask"])[batch["pairs"]]
        if logits.numel() == 0:
            return logits.sum() + 0.0 * sum(p.sum() for p in head.parameters())
        return F.binary_cross_entropy_with_logits(logits, batch["edges"][batch["pairs"]],
                                                  pos_weight=torch.tensor(weights["pos_weight"]))

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = head(batch["states"], batch["mask"])[batch["pairs"]]
        return {"pair": (binary_logits(logits.numpy()), batch["edges"][batch["pairs"]].numpy().astype(np.int64))}


def depends(head: DependencyHead, states: torch.Tensor, mask: torch.Tensor, temperature: float) -> np.ndarray:
    """(B, K, K) calibrated P(slot j consumes slot i) at [i, j]; zero on and below the diagonal."""
    probs = torch.sigmoid(head(states, mask) / temperature)
    return torch.triu(probs, diagonal=1).numpy()
