"""Streamed attention capture: reduce each layer's attention as it is produced.

A forward hook on every selected layer's attention module takes that layer's weights
(batch × heads × T × T), keeps only what the signals need and drops the rest before the next
layer runs, so at most one layer's attention is alive at a time (never L × H × T × T):

* ``rows`` — for each CoT token, the head-aggregated attention row over the whole context
  (n_cot × T), averaged over the selected layers;
* ``head_input_fraction`` — per head, the attention mass each CoT token puts on the problem
  tokens (heads × n_cot), averaged over the selected layers.

Index units: token indices of the teacher's input (prompt + CoT).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.signals.config import JSDConfig


class AttentionCaptureError(RuntimeError):
    """The model returned no attention weights (SDPA/flash attention) or has no findable layers."""


@dataclass(frozen=True)
class SampleLayout:
    """Where one sample's tokens are: its real length and its problem / CoT token ranges."""

    length: int
    problem_token_range: tuple[int, int]
    cot_token_range: tuple[int, int]


@dataclass
class CapturedAttention:
    rows: np.ndarray  # (n_cot, length) float32
    head_input_fraction: np.ndarray  # (heads, n_cot) float32


def aggregate_heads(weights: torch.Tensor, config: JSDConfig) -> torch.Tensor:
    """(heads, rows, T) → (rows, T): mean / max over the configured heads."""
    if config.heads is not None:
        weights = weights[list(config.heads)]
    if config.aggregation == "max":
        return weights.amax(dim=0)
    return weights.mean(dim=0)


def reduce_layer(weights: torch.Tensor, layout: SampleLayout, config: JSDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's attention of one layer (heads × T × T, T ≥ layout.length) → (rows, head fractions).

    rows: (n_cot, length) float32, head-aggregated attention rows of the CoT tokens;
    head fractions: (heads, n_cot) float32, attention mass on problem columns per head.
    """
    cot_start, cot_end = layout.cot_token_range
    p_start, p_end = layout.problem_token_range
    cot_rows = weights[:, cot_start:cot_end, : layout.length].float()
    rows = aggregate_heads(cot_rows, config)
    head_fraction = cot_rows[:, :, p_start:p_end].sum(dim=-1)
    return rows, head_fraction


def resolve_layers(num_layers: int, layers: Sequence[int]) -> list[int]:
    """Normalise layer indices (negative counts from the end); error on out-of-range."""
    resolved = sorted({layer % num_layers if -num_layers <= layer < num_layers else -1 for layer in layers})
    if -1 in resolved:
        raise ValueError(f"layer index out of range for a {num_layers}-layer model: {list(layers)}")
    return resolved


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every decoder layer, in layer order (Llama/Qwen/Mistral/GPT-2 style)."""
    num_layers = model.config.num_hidden_layers
    layer_lists = [
        module for module in model.modules() if isinstance(module, nn.ModuleList) and len(module) == num_layers
    ]
    for layer_list in layer_lists:
        found = [getattr(layer, name, None) for layer in layer_list for name in ("self_attn", "attn", "attention")]
        found = [module for module in found if isinstance(module, nn.Module)]
        if len(found) == num_layers:
            return found
    raise AttentionCaptureError(f"cannot find the {num_layers} attention modules of {type(model).__name__}")


class StreamedCapture:
    """Accumulates per-layer reductions for a batch; use :func:`streamed_capture` to install hooks."""

    def __init__(self, layouts: Sequence[SampleLayout], n_layers: int, config: JSDConfig):
        self.layouts = list(layouts)
        self.n_layers = n_layers
        self.config = config
        self.rows: list[torch.Tensor | None] = [None] * len(layouts)
        self.fractions: list[torch.Tensor | None] = [None] * len(layouts)
        self.layers_seen = 0

    def add_layer(self, weights: torch.Tensor) -> None:
        """weights: (batch, heads, T, T) of one layer."""
        self.layers_seen += 1
        for index, layout in enumerate(self.layouts):
            rows, fraction = reduce_layer(weights[index], layout, self.config)
            self.rows[index] = rows if self.rows[index] is None else self.rows[index] + rows
            self.fractions[index] = fraction if self.fractions[index] is None else self.fractions[index] + fraction

    def results(self) -> list[CapturedAttention]:
        if self.layers_seen != self.n_layers:
            raise AttentionCaptureError(
                f"captured {self.layers_seen} of {self.n_layers} selected layers: the forward pass did not run them"
            )
        return [
            CapturedAttention(
                rows=(rows / self.n_layers).cpu().numpy(),
                head_input_fraction=(fraction / self.n_layers).cpu().numpy(),
            )
            for rows, fraction in zip(self.rows, self.fractions, strict=True)
        ]


@contextmanager
def streamed_capture(model: nn.Module, layouts: Sequence[SampleLayout], config: JSDConfig) -> Iterator[StreamedCapture]:
    """Hook the selected layers for one forward pass; each hook reduces and then drops its weights."""
    modules = attention_modules(model)
    layers = resolve_layers(len(modules), config.layers)
    capture = StreamedCapture(layouts, len(layers), config)

    def hook(module: nn.Module, args: tuple, output: tuple) -> tuple:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise AttentionCaptureError(
                f"{type(module).__name__} returned no attention weights: the model runs "
                f"{getattr(model.config, '_attn_implementation', '?')!r} attention. "
                "Load the teacher with attn_implementation='eager'."
            )
        capture.add_layer(weights.detach())
        return (output[0], None, *output[2:])  # release this layer's weights now

    handles = [modules[layer].register_forward_hook(hook) for layer in layers]
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def full_attention_capture(
    attentions: Sequence[torch.Tensor], layouts: Sequence[SampleLayout], config: JSDConfig
) -> list[CapturedAttention]:
    """The same reduction from a complete ``output_attentions=True`` result (all layers held at once).

    The reference path for tests and the memory benchmark's baseline.
    """
    layers = resolve_layers(len(attentions), config.layers)
    capture = StreamedCapture(layouts, len(layers), config)
    for layer in layers:
        capture.add_layer(attentions[layer])
    return capture.results()
