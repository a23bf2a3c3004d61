"""C2 classifier: step slot k → operation of the k-th step (or ``NONE`` past the program).

Labels: C2 ``{"steps": [{"step": 1, "op": "DIV", …}, …]}``. Head: ``MAX_STEPS`` learned slot
queries decoded over the frozen token states (a small transformer decoder), one op
distribution per slot. Class-weighted cross-entropy (sqrt inverse frequency).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import MAX_STEPS
from training.examples import C2Example, c2_examples, op_vocabulary
from training.heads import HeadConfig, SlotHead
from training.tasks import Corpus, Task, inverse_frequency_weights


class ClassifierHead(nn.Module):
    """(B, T, H) states → (B, K, n_ops) op logits per step slot."""

    def __init__(self, cfg: HeadConfig, n_ops: int):
        super().__init__()
        self.slots = SlotHead(cfg, MAX_STEPS)
        self.out = nn.Linear(cfg.width, n_ops)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.slots(states, mask))  # (B, K, n_ops)


class C2Task(Task):
    name = "C2"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"ops": op_vocabulary(train.records)}

    def examples(self, corpus: Corpus, maps: dict[str, Any]) -> list[C2Example]:
        return c2_examples(corpus.records, maps["ops"])

    def build_head(self, cfg: HeadConfig, maps: dict[str, Any]) -> nn.Module:
        return ClassifierHead(cfg, len(maps["ops"]))

    def collate(self, corpus: Corpus, examples: Sequence[C2Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        return {"states": states, "mask": mask, "ops": torch.from_numpy(np.stack([e.ops for e in examples]))}

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        return {"op": np.concatenate([e.ops for e in examples]) if examples else np.zeros(0, np.int64)}

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        return {"op": inverse_frequency_weights(train_codes["op"], len(maps["ops"]))}

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = head(batch["states"], batch["mask"])  # (B, K, n_ops)
        return F.cross_entropy(logits.flatten(0, 1), batch["ops"].flatten(), weight=weights["op"])

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = head(batch["states"], batch["mask"])
        return {"op": (logits.flatten(0, 1).numpy().astype(np.float64), batch["ops"].flatten().numpy())}


def op_probs(head: ClassifierHead, states: torch.Tensor, mask: torch.Tensor, temperature: float) -> np.ndarray:
    """(B, K, n_ops) calibrated op distribution per step slot."""
    return torch.softmax(head(states, mask) / temperature, dim=-1).numpy()
