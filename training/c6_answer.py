"""C6 answer: problem → which step slot holds the answer, and the answer's type.

Labels: C6 ``{"answer_step": 3, "n_steps": 3, "answer_type": "integer"}``. Two classification
heads with their own temperature and ECE: ``answer_step`` (a pointer over the ``MAX_STEPS``
slots) and ``answer_type`` (:data:`app.inference.proposals.ANSWER_TYPES`). Head: ``MAX_STEPS``
slot queries + one type query decoded over the tokens; class-weighted cross-entropy for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import ANSWER_TYPES, MAX_STEPS
from training.examples import C6Example, c6_examples
from training.heads import HeadConfig, SlotHead
from training.tasks import Corpus, Task, inverse_frequency_weights


class AnswerHead(nn.Module):
    """(B, T, H) states → ((B, K) answer-slot logits, (B, n_types) type logits)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.queries = SlotHead(cfg, MAX_STEPS + 1)
        self.slot = nn.Linear(cfg.width, 1)
        self.kind = nn.Linear(cfg.width, len(ANSWER_TYPES))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.queries(states, mask)  # (B, K + 1, d)
        return self.slot(q[:, :MAX_STEPS]).squeeze(-1), self.kind(q[:, MAX_STEPS])  # (B, K), (B, n_types)


class C6Task(Task):
    name = "C6"

    def examples(self, corpus: Corpus, maps) -> list[C6Example]:
        return c6_examples(corpus.records)

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return AnswerHead(cfg)

    def collate(self, corpus: Corpus, examples: Sequence[C6Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        return {"states": states, "mask": mask,
                "slot": torch.tensor([e.answer_slot for e in examples]),
                "type": torch.tensor([e.answer_type for e in examples])}

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        return {"answer_step": np.array([e.answer_slot for e in examples], dtype=np.int64),
                "answer_type": np.array([e.answer_type for e in examples], dtype=np.int64)}

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        return {"answer_step": inverse_frequency_weights(train_codes["answer_step"], MAX_STEPS),
                "answer_type": inverse_frequency_weights(train_codes["answer_type"], len(ANSWER_TYPES))}

    def loss(self, head, batch, weights) -> torch.Tensor:
        slot, kind = head(batch["states"], batch["mask"])
        return (F.cross_entropy(slot, batch["slot"], weight=weights["answer_step"])
                + F.cross_entropy(kind, batch["type"], weight=weights["answer_type"]))

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        slot, kind = head(batch["states"], batch["mask"])
        return {"answer_step": (slot.numpy().astype(np.float64), batch["slot"].numpy()),
                "answer_type": (kind.numpy().astype(np.float64), batch["type"].numpy())}


def answer_probs(head: AnswerHead, states: torch.Tensor, mask: torch.Tensor,
                 temperatures: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(B, K) calibrated P(answer slot) and (B, n_types) P(answer type)."""
    slot, kind = head(states, mask)
    return (torch.softmax(slot / temperatures["answer_step"], -1).numpy(),
            torch.softmax(kind / temperatures["answer_type"], -1).numpy())
