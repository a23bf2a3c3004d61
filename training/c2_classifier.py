"""C2 classifier: step slot k → operation of the k-th step (or ``NONE`` past the program).

Labels: C2 ``{"steps": [{"step": 1, "op": "DIV", …}, …]}``. Two heads, each with its own
temperature and metrics: ``op`` — ``MAX_STEPS`` learned slot queries decoded over the frozen
token states (a small transformer decoder), one op distribution per slot (what review and
attribution read); ``next_op`` — the op of step k given the program's steps 0..k-1 (the C3
labels, :mod:`training.prefix`), which the search asks of every partial program it grows.
Class-weighted cross-entropy (sqrt inverse frequency).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import MAX_STEPS
from training.examples import C2Example, c2_examples, constant_vocabulary, op_vocabulary
from training.heads import HeadConfig, SlotHead
from training.prefix import PrefixArrays, PrefixClassifier, batch_prefix_logits, prefix_batch, problem_prefix_logits
from training.tasks import Corpus, Task, inverse_frequency_weights


class ClassifierHead(nn.Module):
    """(B, T, H) states → (B, K, n_ops) op logits per step slot; ``next_op`` (when built with
    ``prefixed``) scores the next op after a prefix."""

    def __init__(self, cfg: HeadConfig, n_ops: int, prefixed: bool = False):
        super().__init__()
        self.slots = SlotHead(cfg, MAX_STEPS)
        self.out = nn.Linear(cfg.width, n_ops)
        self.next_op = PrefixClassifier(cfg, n_ops, n_ops) if prefixed else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.slots(states, mask))  # (B, K, n_ops)


class C2Task(Task):
    name = "C2"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"ops": op_vocabulary(train.records), "constants": constant_vocabulary(train.records), "prefixed": True}

    def examples(self, corpus: Corpus, maps: dict[str, Any]) -> list[C2Example]:
        if maps.get("prefixed"):
            return c2_examples(corpus.records, maps["ops"], corpus.mentions, maps["constants"])
        return c2_examples(corpus.records, maps["ops"])

    def build_head(self, cfg: HeadConfig, maps: dict[str, Any]) -> nn.Module:
        return ClassifierHead(cfg, len(maps["ops"]), bool(maps.get("prefixed")))

    def collate(self, corpus: Corpus, examples: Sequence[C2Example], maps) -> dict[str, torch.Tensor]:
        states, mask = corpus.states([e.index for e in examples])
        batch = {"states": states, "mask": mask, "ops": torch.from_numpy(np.stack([e.ops for e in examples]))}
        if maps.get("prefixed"):  # next-op requests: each step after its gold prefix
            requests = [(b, e.program[:k]) for b, e in enumerate(examples) for k in range(len(e.program))]
            batch.update(prefix_batch(corpus, examples, requests, states.shape[1]))
            batch["next"] = torch.tensor([examples[b].program[len(steps)][0] for b, steps in requests], dtype=torch.long)
        return batch

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        codes = {"op": np.concatenate([e.ops for e in examples]) if examples else np.zeros(0, np.int64)}
        if maps.get("prefixed"):
            codes["next_op"] = np.array([op for e in examples for op, _ in e.program], dtype=np.int64)
        return codes

    def loss_weights(self, train_codes, maps) -> dict[str, Any]:
        weights = {"op": inverse_frequency_weights(train_codes["op"], len(maps["ops"]))}
        if "next_op" in train_codes:
            weights["next_op"] = inverse_frequency_weights(train_codes["next_op"], len(maps["ops"]))
        return weights

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = head(batch["states"], batch["mask"])  # (B, K, n_ops)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["ops"].flatten(), weight=weights["op"])
        following = batch_prefix_logits(head.next_op, batch)
        if following is not None:
            loss = loss + F.cross_entropy(following, batch["next"], weight=weights["next_op"])
        return loss

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = head(batch["states"], batch["mask"])
        out = {"op": (logits.flatten(0, 1).numpy().astype(np.float64), batch["ops"].flatten().numpy())}
        if head.next_op is not None:
            following = batch_prefix_logits(head.next_op, batch)
            out["next_op"] = ((following.numpy().astype(np.float64), batch["next"].numpy()) if following is not None
                              else (np.zeros((0, logits.shape[-1])), np.zeros(0, dtype=np.int64)))
        return out


def op_probs(head: ClassifierHead, states: torch.Tensor, mask: torch.Tensor, temperature: float) -> np.ndarray:
    """(B, K, n_ops) calibrated op distribution per step slot."""
    return torch.softmax(head(states, mask) / temperature, dim=-1).numpy()


def next_op_probs(head: ClassifierHead, states: torch.Tensor, mask: torch.Tensor, starts: np.ndarray,
                  ends: np.ndarray, mentions: Sequence, prefixes: Sequence[PrefixArrays], temperature: float) -> np.ndarray:
    """For one problem ((1, T, H) states) and n prefixes: (n, n_ops) calibrated P(op of the next step)."""
    if not prefixes:
        return np.zeros((0, head.out.out_features))
    logits = problem_prefix_logits(head.next_op, states, mask, starts, ends, mentions, prefixes)
    return torch.softmax(logits / temperature, dim=-1).numpy()
