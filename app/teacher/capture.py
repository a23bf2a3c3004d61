"""Streamed attention capture: reduce each layer's attention as it is produced.

The signals need, per CoT token, the head-aggregated attention row over the whole context and,
per head, the attention mass on the problem tokens. Two capture methods produce exactly that
without ever holding L × H × T × T:

* ``recompute`` (default) — the model runs its fast SDPA kernel; for each *selected* layer a
  registered attention function also recomputes softmax(q·kᵀ·scaling + mask) from the layer's
  own queries and keys for the CoT rows only, in blocks of ``block_rows`` rows, and reduces each
  block at once. The mask is the one the model passes to its attention (causal, padding and
  sliding window); ``None`` from the model means plain causal. Attention the recompute cannot
  reproduce (attention sinks, logit soft-capping) is refused with ``AttentionCaptureError``.
  Peak extra memory: ``heads × block_rows × T``.
* ``eager`` — the model runs eager attention; a forward hook on each selected layer reduces the
  returned ``heads × T × T`` weights and drops them before the next layer runs.

Outputs (``CapturedAttention``), averaged over the selected layers:
``rows`` (n_cot × length) and ``head_input_fraction`` (heads × n_cot).
Index units: token indices of the teacher's input (prompt + CoT).

Row convention: row ``t`` of ``rows`` (and column ``t`` of ``head_input_fraction``) is the
attention of the **query at CoT token t**, i.e. at absolute position ``cot_start + t`` — the
distribution that token's hidden state reads when predicting token ``t + 1``. It is causal:
its support is positions ``0 … cot_start + t`` (self included), so ``rows[t, cot_start + t] > 0``
and ``rows[t, cot_start + t + 1:] == 0`` (``check_row_convention``).

Non-finite attention (NaN/inf from overflow or broken weights) is detected per sample and layer
and reported in ``CapturedAttention.nonfinite``; the run layer turns it into an error naming the
problem and the layer instead of letting NaN rows yield no boundaries and all-zero IAF.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from app.signals.config import JSDConfig

CaptureMethod = Literal["recompute", "eager"]
RECOMPUTE_ATTENTION = "mycelium_recompute"


class AttentionCaptureError(RuntimeError):
    """The model returned no attention weights (SDPA/flash attention), has no findable layers, or
    uses attention the recompute capture cannot reproduce (sinks, soft-capping)."""


class NonFiniteAttentionError(ValueError):
    """Captured attention holds NaN/inf (the message names the problem and the layer)."""


@dataclass(frozen=True)
class SampleLayout:
    """Where one sample's tokens are: its real length and its problem / CoT token ranges."""

    length: int
    problem_token_range: tuple[int, int]
    cot_token_range: tuple[int, int]


@dataclass
class CapturedAttention:
    """Reduced attention of one sample; row/column t = the query at CoT token t (module docstring)."""

    rows: np.ndarray  # (n_cot, length) float32
    head_input_fraction: np.ndarray  # (heads, n_cot) float32
    nonfinite: tuple[int, int] | None = None  # (layer, CoT token) of the first non-finite row, if any


def check_row_convention(rows: np.ndarray, cot_token_range: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless ``rows`` (n_cot × T) follow the row convention: row t is the
    causal attention of the query at CoT token t (absolute position ``cot_start + t``).

    Checks two entries per row, O(n_cot): the diagonal ``rows[t, cot_start + t]`` is positive (a
    softmax query always attends to itself) and ``rows[t, cot_start + t + 1]`` is zero (no future
    key). A one-token shift in either direction violates one of them.
    """
    cot_start, cot_end = int(cot_token_range[0]), int(cot_token_range[1])
    n_cot, width = rows.shape
    if cot_end - cot_start != n_cot or cot_end > width:
        raise ValueError(f"rows {rows.shape} do not match cot_token_range {cot_token_range}")
    t = np.arange(n_cot)
    diagonal = rows[t, cot_start + t]
    if not np.all(diagonal > 0):
        bad = int(np.flatnonzero(~(diagonal > 0))[0])
        raise ValueError(f"row {bad} puts no attention on its own CoT token (position {cot_start + bad}): "
                         "rows are not 'row t = query at CoT token t' (shifted by one?)")
    future = rows[t[:-1], cot_start + t[:-1] + 1]
    if np.any(future != 0):
        bad = int(np.flatnonzero(future != 0)[0])
        raise ValueError(f"row {bad} attends to the next position {cot_start + bad + 1}: rows are not causal "
                         "'row t = query at CoT token t' (shifted by one?)")


def aggregate_heads(weights: torch.Tensor, config: JSDConfig) -> torch.Tensor:
    """(heads, rows, T) → (rows, T): mean / max over the configured heads (torch, on device)."""
    if config.heads is not None:
        weights = weights[list(config.heads)]
    if config.aggregation == "max":
        return weights.amax(dim=0)
    return weights.mean(dim=0)


def resolve_layers(num_layers: int, layers: Sequence[int]) -> list[int]:
    """Normalise layer indices (negative counts from the end); error on out-of-range."""
    bad = [layer for layer in layers if not -num_layers <= layer < num_layers]
    if bad:
        raise ValueError(f"layer index out of range for a {num_layers}-layer model: {bad}")
    return sorted({layer % num_layers for layer in layers})


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every decoder layer, in layer order (Llama/Qwen/Mistral/GPT-2 style)."""
    num_layers = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            found = [getattr(layer, name, None) for layer in module for name in ("self_attn", "attn", "attention")]
            found = [m for m in found if isinstance(m, nn.Module)]
            if len(found) == num_layers:
                return found
    raise AttentionCaptureError(f"cannot find the {num_layers} attention modules of {type(model).__name__}")


class StreamedCapture:
    """Running per-sample sums of the reduced attention of the selected layers."""

    def __init__(self, layouts: Sequence[SampleLayout], n_layers: int, config: JSDConfig):
        self.layouts = list(layouts)
        self.n_layers = n_layers
        self.config = config
        self.rows: list[torch.Tensor | None] = [None] * len(layouts)
        self.fractions: list[torch.Tensor | None] = [None] * len(layouts)
        self.nonfinite: list[tuple[int, int] | None] = [None] * len(layouts)
        self.layers_seen = 0

    def add_block(self, sample: int, first_row: int, weights: torch.Tensor) -> None:
        """Reduce attention weights (heads × r × ≥length) of CoT rows [first_row, first_row + r) of a sample."""
        layout = self.layouts[sample]
        n_cot = layout.cot_token_range[1] - layout.cot_token_range[0]
        block = weights[:, :, : layout.length].float()
        if self.rows[sample] is None:
            self.rows[sample] = torch.zeros((n_cot, layout.length), dtype=torch.float32, device=block.device)
            self.fractions[sample] = torch.zeros((block.shape[0], n_cot), dtype=torch.float32, device=block.device)
        r = block.shape[1]
        p_start, p_end = layout.problem_token_range
        self.rows[sample][first_row : first_row + r] += aggregate_heads(block, self.config)
        self.fractions[sample][:, first_row : first_row + r] += block[:, :, p_start:p_end].sum(dim=-1)

    def add_layer(self, weights: torch.Tensor, layer: int) -> None:
        """Reduce one layer's full weights (batch × heads × T × T) of model layer ``layer``."""
        for sample, layout in enumerate(self.layouts):
            cot_start, cot_end = layout.cot_token_range
            self.add_block(sample, 0, weights[sample, :, cot_start:cot_end])
        self.finish_layer(layer)

    def finish_layer(self, layer: int) -> None:
        """Count layer ``layer`` as captured; note, per sample, the first layer whose attention made the
        running sums non-finite (NaN/inf stay non-finite in every later sum), with its first bad CoT row."""
        for sample, (rows, fraction) in enumerate(zip(self.rows, self.fractions, strict=True)):
            if self.nonfinite[sample] is not None or rows is None or fraction is None:
                continue
            bad = ~torch.isfinite(rows).all(dim=1) | ~torch.isfinite(fraction).all(dim=0)  # (n_cot,)
            if bool(bad.any()):
                self.nonfinite[sample] = (layer, int(bad.nonzero()[0, 0]))
        self.layers_seen += 1

    def results(self) -> list[CapturedAttention]:
        if self.layers_seen != self.n_layers:
            raise AttentionCaptureError(
                f"captured {self.layers_seen} of {self.n_layers} selected layers: the forward pass did not run them"
            )
        return [
            CapturedAttention(
                rows=(rows / self.n_layers).cpu().numpy(),
                head_input_fraction=(fraction / self.n_layers).cpu().numpy(),
                nonfinite=nonfinite,
            )
            for rows, fraction, nonfinite in zip(self.rows, self.fractions, self.nonfinite, strict=True)
        ]


def recompute_cot_attention(
    capture: StreamedCapture,
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    block_rows: int,
    attention_mask: torch.Tensor | None = None,
    layer: int = -1,
) -> None:
    """softmax(q·kᵀ·scaling + mask) for the CoT rows of every sample, block by block.

    query: (batch, heads, T, d); key: (batch, heads, T, d) (KV heads already repeated), token
    positions 0…T-1. ``attention_mask``: the mask the model passed to its attention layer, shape
    (batch, 1 or heads, T, T) — bool (True = attend) or additive float — carrying causality,
    padding and any sliding window; ``None`` means plain causal (what transformers passes when
    nothing else is masked). ``layer``: the model layer index (for error reports).
    """
    for sample, layout in enumerate(capture.layouts):
        cot_start, cot_end = layout.cot_token_range
        keys = key[sample, :, : layout.length].float()
        positions = torch.arange(layout.length, device=query.device)
        for first in range(cot_start, cot_end, block_rows):
            last = min(first + block_rows, cot_end)
            scores = torch.matmul(query[sample, :, first:last].float(), keys.transpose(-1, -2)) * scaling
            if attention_mask is None:
                future = positions[None, :] > torch.arange(first, last, device=query.device)[:, None]
                scores.masked_fill_(future, float("-inf"))
            else:
                mask = attention_mask[sample, :, first:last, : layout.length]  # (1 or heads, r, length)
                if mask.dtype == torch.bool:
                    scores.masked_fill_(~mask, float("-inf"))
                else:
                    scores += mask.float()
            capture.add_block(sample, first - cot_start, torch.softmax(scores, dim=-1))
    capture.finish_layer(layer)


def _refuse_unsupported(module: nn.Module, kwargs: dict) -> None:
    """The recompute reproduces plain masked softmax(q·kᵀ·scaling) only: refuse anything else loudly."""
    sinks = kwargs.get("s_aux", getattr(module, "sinks", None))
    if sinks is not None:
        raise AttentionCaptureError(
            f"{type(module).__name__} uses attention sinks: the recompute capture would ignore them; "
            "use capture_method='eager'"
        )
    for name in ("softcap", "position_bias"):
        if kwargs.get(name) is not None:
            raise AttentionCaptureError(
                f"{type(module).__name__} passes {name}: the recompute capture cannot reproduce it; "
                "use capture_method='eager'"
            )


def _recompute_attention_forward(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """SDPA for the layer's output; for a capturing layer, also the CoT rows' attention weights."""
    capture: StreamedCapture | None = getattr(module, "_mycelium_capture", None)
    if capture is not None:
        _refuse_unsupported(module, kwargs)
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if capture is not None:
        scaling = kwargs.get("scaling")
        scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
        full_keys = repeat_kv(key, query.shape[1] // key.shape[1])
        recompute_cot_attention(
            capture, query, full_keys, scaling, getattr(module, "_mycelium_block_rows", 128),
            attention_mask=attention_mask, layer=getattr(module, "_mycelium_layer", -1),
        )
    return output, None


AttentionInterface.register(RECOMPUTE_ATTENTION, _recompute_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(RECOMPUTE_ATTENTION, sdpa_mask)


@contextmanager
def streamed_capture(
    model: nn.Module,
    layouts: Sequence[SampleLayout],
    config: JSDConfig,
    method: CaptureMethod = "recompute",
    block_rows: int = 128,
) -> Iterator[StreamedCapture]:
    """Capture the selected layers' reduced attention during one forward pass run inside the block."""
    modules = attention_modules(model)
    layers = resolve_layers(len(modules), config.layers)
    capture = StreamedCapture(layouts, len(layers), config)
    if method == "recompute":
        previous = model.config._attn_implementation
        model.set_attn_implementation(RECOMPUTE_ATTENTION)
        for layer in layers:
            modules[layer]._mycelium_capture = capture
            modules[layer]._mycelium_block_rows = block_rows
            modules[layer]._mycelium_layer = layer
        try:
            yield capture
        finally:
            for layer in layers:
                del modules[layer]._mycelium_capture, modules[layer]._mycelium_block_rows, modules[layer]._mycelium_layer
            model.set_attn_implementation(previous)
        return

    def hook(module: nn.Module, args: tuple, output: tuple, layer: int) -> tuple:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise AttentionCaptureError(
                f"{type(module).__name__} returned no attention weights: the model runs "
                f"{getattr(model.config, '_attn_implementation', '?')!r} attention. "
                "Load the teacher with attn_implementation='eager' or use the 'recompute' capture."
            )
        capture.add_layer(weights.detach(), layer)
        return (output[0], None, *output[2:])  # release this layer's weights now

    handles = [modules[layer].register_forward_hook(partial(hook, layer=layer)) for layer in layers]
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
        capture.add_layer(attentions[layer], layer)
    return capture.results()
