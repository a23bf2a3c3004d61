"""C6 answer: problem → which step slot holds the answer, and the answer's type.

Labels: C6 ``{"answer_step": 3, "n_steps": 3, "answer_type": "integer"}``. Three classification
heads with their own temperature and ECE: ``answer_step`` (a pointer over the ``MAX_STEPS``
slots, the problem-level step count), ``answer_type`` (:data:`app.inference.proposals.ANSWER_TYPES`)
and ``stop`` — given the program's first k steps (the C3 labels, :mod:`training.prefix`), is
step k the answer step? The search asks ``stop`` of every partial program it grows, so the
step count is decided seeing which numbers the program has already read. Head: ``MAX_STEPS``
slot queries + one type query decoded over the tokens, and one stop query decoded over the
prefix-conditioned memory; class-weighted cross-entropy for all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import ANSWER_TYPES, MAX_STEPS
from training.examples import C6Example, c6_examples, constant_vocabulary, op_vocabulary
from training.heads import HeadConfig, SlotHead
from training.prefix import PrefixArrays, PrefixClassifier, batch_prefix_logits, prefix_batch, problem_prefix_logits
from training.tasks import Corpus, Task, inverse_frequency_weights


class AnswerHead(nn.Module):
    """(B, T, H) states → ((B, K) answer-slot logits, (B, n_types) type logits); ``stop`` (when
    built with ``n_ops``) scores prefixes."""

    def __init__(self, cfg: HeadConfig, n_ops: int = 0):
        super().__init__()
        self.queries = SlotHead(cfg, MAX_STEPS + 1)
        self.slot = nn.Linear(cfg.width, 1)
        self.kind = nn.Linear(cfg.width, len(ANSWER_TYPES))
        self.stop = PrefixClassifier(cfg, n_ops, 2) if n_ops else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.queries(states, mask)  # (B, K + 1, d)
        return self.slot(q[:, :MAX_STEPS]).squeeze(-1), self.kind(q[:, MAX_STEPS])  # (B, K), (B, n_types)


class C6Task(Task):
    name = "C6"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"ops": op_vocabulary(train.records), "constants": constant_vocabulary(train.records)}

    def examples(self, corpus: Corpus, maps) -> list[C6Example]:
        return c6_examples(corpus.records, corpus.mentions, maps.get("ops", ()), maps.get("constants", ()))

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return AnswerHead(cfg, len(maps.get("ops", ())))

    def collate(self, corpus: Corpus, examples: Sequence[C6Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        batch = {"states": states, "mask": mask,
                 "slot": torch.tensor([e.answer_slot for e in examples]),
                 "type": torch.tensor([e.answer_type for e in examples])}
        # Stop requests: every prefix of each labelled program, target 1 on the full one.
        requests = [(b, e.program[:k]) for b, e in enumerate(examples) for k in range(1, len(e.program) + 1)]
        batch.update(prefix_batch(corpus, examples, requests, states.shape[1]))
        batch["stop"] = torch.tensor([int(len(steps) == len(examples[b].program)) for b, steps in requests],
                                     dtype=torch.long)
        return batch

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        codes = {"answer_step": np.array([e.answer_slot for e in examples], dtype=np.int64),
                 "answer_type": np.array([e.answer_type for e in examples], dtype=np.int64)}
        if maps.get("ops"):
            codes["stop"] = np.array([int(k == len(e.program)) for e in examples
                                      for k in range(1, len(e.program) + 1)], dtype=np.int64)
        return codes

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        weights = {"answer_step": inverse_frequency_weights(train_codes["answer_step"], MAX_STEPS),
                   "answer_type": inverse_frequency_weights(train_codes["answer_type"], len(ANSWER_TYPES))}
        if "stop" in train_codes:
            weights["stop"] = inverse_frequency_weights(train_codes["stop"], 2)
        return weights

    def loss(self, head, batch, weights) -> torch.Tensor:
        slot, kind = head(batch["states"], batch["mask"])
        loss = (F.cross_entropy(slot, batch["slot"], weight=weights["answer_step"])
                + F.cross_entropy(kind, batch["type"], weight=weights["answer_type"]))
        stop = batch_prefix_logits(head.stop, batch)
        if stop is not None:
            loss = loss + F.cross_entropy(stop, batch["stop"], weight=weights["stop"])
        return loss

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        slot, kind = head(batch["states"], batch["mask"])
        out = {"answer_step": (slot.numpy().astype(np.float64), batch["slot"].numpy()),
               "answer_type": (kind.numpy().astype(np.float64), batch["type"].numpy())}
        if head.stop is not None:
            stop = batch_prefix_logits(head.stop, batch)
            out["stop"] = ((stop.numpy().astype(np.float64), batch["stop"].numpy()) if stop is not None
                           else (np.zeros((0, 2)), np.zeros(0, dtype=np.int64)))
        return out


def answer_probs(head: AnswerHead, states: torch.Tensor, mask: torch.Tensor,
                 temperatures: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(B, K) calibrated P(answer slot) and (B, n_types) P(answer type)."""
    slot, kind = head(states, mask)
    return (torch.softmax(slot / temperatures["answer_step"], -1).numpy(),
            torch.softmax(kind / temperatures["answer_type"], -1).numpy())


def stop_probs(head: AnswerHead, states: torch.Tensor, mask: torch.Tensor, starts: np.ndarray, ends: np.ndarray,
               mentions: Sequence, prefixes: Sequence[PrefixArrays], temperature: float) -> np.ndarray:
    """For one problem ((1, T, H) states) and partial programs: (n,) calibrated P(the prefix's
    last step is the answer step)."""
    if not prefixes:
        return np.zeros(0)
    logits = problem_prefix_logits(head.stop, states, mask, starts, ends, mentions, prefixes)
    return torch.softmax(logits / temperature, dim=-1)[:, 1].numpy()
