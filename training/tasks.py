"""What every specialist module provides to the training loop and the loader.

A :class:`Corpus` is a list of problems with their frozen encodings (TOKEN states + CHAR
offsets) and number mentions. A :class:`Task` (one per specialist module, ``training/c1_*.py``
… ``c6_*.py``) turns a corpus into examples, builds its head, collates batches, defines the
(class-weighted) loss and exposes its classification heads' flat ``(logits (N, K), y (N,))``
for metrics and temperature scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.inference.proposals import MentionView
from training.encoder import Encoded
from training.examples import ProblemData, mentions_of, pad_states
from training.heads import HeadConfig


@dataclass
class Corpus:
    """Problems (in a fixed order) with their encodings; mentions computed on first use."""

    records: list[ProblemData]
    encoded: list[Encoded]
    _mentions: list[list[MentionView]] | None = field(default=None, repr=False)

    @property
    def mentions(self) -> list[list[MentionView]]:
        if self._mentions is None:
            self._mentions = [mentions_of(r.text) for r in self.records]
        return self._mentions

    def states(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) float32 states and (B, T) bool mask of the problems at ``indices``."""
        states, mask = pad_states([self.encoded[i].states for i in indices])
        return torch.from_numpy(states), torch.from_numpy(mask)


def inverse_frequency_weights(codes: np.ndarray, n_classes: int, power: float = 0.5,
                              clip: tuple[float, float] = (0.2, 5.0)) -> torch.Tensor:
    """(n_classes,) loss weights ``(N / (K · n_c)) ** power``, clipped; unseen classes get the max."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, (counts.sum() / (present * np.maximum(counts, 1))) ** power, clip[1])
    return torch.tensor(np.clip(w, *clip), dtype=torch.float32)


def positive_weight(targets: np.ndarray, clip: tuple[float, float] = (0.2, 10.0)) -> float:
    """BCE ``pos_weight``: sqrt(negatives / positives), clipped (imbalance without overshooting)."""
    targets = np.asarray(targets)
    pos = float((targets == 1).sum())
    neg = float((targets == 0).sum())
    if pos == 0 or neg == 0:
        return 1.0
    return float(np.clip(np.sqrt(neg / pos), *clip))


class Task:
    """Base of the six specialist tasks (see the module docstring)."""

    name: str = ""
    primary: str = "macro_f1"  # dev metric for checkpoint selection (mean over heads)
    code_version: str = ""  # bump when this task's head / examples change what a config trains

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        """Vocabularies fixed on the train split (stored in the checkpoint)."""
        return {}

    def examples(self, corpus: Corpus, maps: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def build_head(self, cfg: HeadConfig, maps: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def collate(self, corpus: Corpus, examples: Sequence[Any], maps: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def codes(self, examples: Sequence[Any], corpus: Corpus, maps: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per classification head, the flat integer targets (for weights and the majority baseline)."""
        raise NotImplementedError

    def loss_weights(self, train_codes: dict[str, np.ndarray], maps: dict[str, Any]) -> dict[str, Any]:
        return {}

    def loss(self, head: nn.Module, batch: dict[str, torch.Tensor], weights: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, head: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per classification head: (N, K) float logits and (N,) int targets of this batch."""
        raise NotImplementedError

    def baseline_codes(self, examples: Sequence[Any], corpus: Corpus, maps: dict[str, Any]) -> dict[str, np.ndarray]:
        """Targets in a problem-independent coding for the majority baseline (default: ``codes``)."""
        return self.codes(examples, corpus, maps)
