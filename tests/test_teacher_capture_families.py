"""Recompute capture vs eager attention per model family and dtype (issue 15, defects 1, 8, 9).

Tiny random-weight models are built from configs (no download): Qwen2 with and without a sliding
window, Llama, GPT-2, Mistral (sliding window). The recompute capture (SDPA output + recomputed
CoT rows under the model's own mask) must equal the eager capture (the model's returned weights),
for a right-padded batch, in float32 and bfloat16 with explicit tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

from app.signals.config import JSDConfig
from app.teacher.capture import (
    AttentionCaptureError,
    CapturedAttention,
    SampleLayout,
    check_row_convention,
    streamed_capture,
)

VOCAB = 97
WINDOW = 8  # sliding window shorter than the 40-token sequences
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def family_config(family: str):
    """A tiny config per family; initializer_range 0.2 makes attention peaked (windows matter)."""
    if family == "qwen2":
        return Qwen2Config(**SMALL, num_key_value_heads=2, initializer_range=0.2)
    if family == "qwen2-window":
        return Qwen2Config(**SMALL, num_key_value_heads=2, initializer_range=0.2,
                           use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)
    if family == "llama":
        return LlamaConfig(**SMALL, num_key_value_heads=2, initializer_range=0.2)
    if family == "mistral":
        return MistralConfig(**SMALL, num_key_value_heads=2, initializer_range=0.2, sliding_window=WINDOW)
    if family == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, initializer_range=0.2,
                          bos_token_id=None, eos_token_id=None)
    raise ValueError(family)


FAMILIES = ["qwen2", "qwen2-window", "llama", "gpt2", "mistral"]
# float32: both paths are the same math; bfloat16: eager rounds q·kᵀ and the weights to bf16
# (8-bit mantissa) while the recompute takes softmax in float32 from the same bf16 q, k.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
LAYOUTS = [SampleLayout(40, (3, 15), (20, 40)), SampleLayout(33, (3, 12), (18, 33))]


def build_model(family: str, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(family_config(family), attn_implementation="eager")
    return model.to(dtype).eval()


def batch_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch of two samples (40 and 33 real tokens)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (len(LAYOUTS), 40), generator=generator)
    mask = torch.zeros_like(ids)
    for row, layout in enumerate(LAYOUTS):
        mask[row, : layout.length] = 1
        ids[row, layout.length :] = 0
    return ids, mask


def capture(model: torch.nn.Module, method: str, config: JSDConfig = JSDConfig(layers=(0, 1))) -> list[CapturedAttention]:
    ids, mask = batch_inputs()
    with torch.no_grad(), streamed_capture(model, LAYOUTS, config, method=method, block_rows=7) as cap:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    return cap.results()


def max_diffs(family: str, dtype: torch.dtype) -> tuple[float, float]:
    model = build_model(family, dtype)
    eager, recomputed = capture(model, "eager"), capture(model, "recompute")
    rows = max(float(np.abs(r.rows - e.rows).max()) for r, e in zip(recomputed, eager, strict=True))
    fractions = max(
        float(np.abs(r.head_input_fraction - e.head_input_fraction).max()) for r, e in zip(recomputed, eager, strict=True)
    )
    return rows, fractions


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_recompute_equals_eager_per_family_and_dtype(family: str, dtype: torch.dtype) -> None:
    rows, fractions = max_diffs(family, dtype)
    print(f"{family} {dtype}: rows {rows:.2e} fractions {fractions:.2e}")
    assert rows < TOLERANCE[dtype] and fractions < TOLERANCE[dtype]


@pytest.mark.parametrize("family", ["qwen2-window", "mistral"])
def test_sliding_window_is_honoured(family: str) -> None:
    """Keys further back than the window get exactly zero attention in the recompute capture."""
    model = build_model(family, torch.float32)
    captured = capture(model, "recompute", JSDConfig(layers=(-1,)))
    for layout, cap in zip(LAYOUTS, captured, strict=True):
        cot_start = layout.cot_token_range[0]
        position = cot_start + np.arange(cap.rows.shape[0])[:, None]
        outside = np.arange(layout.length)[None, :] <= position - WINDOW
        assert outside.any() and np.all(cap.rows[outside] == 0)


def test_row_t_is_the_query_at_cot_token_t() -> None:
    """Row t has support 0 … cot_start + t: self included, nothing after (both capture methods)."""
    model = build_model("llama", torch.float32)
    for method in ("eager", "recompute"):
        for layout, cap in zip(LAYOUTS, capture(model, method), strict=True):
            cot_start = layout.cot_token_range[0]
            last_nonzero = np.array([np.flatnonzero(row)[-1] for row in cap.rows])
            assert last_nonzero.tolist() == list(range(cot_start, layout.cot_token_range[1]))
            check_row_convention(cap.rows, layout.cot_token_range)
            shifted_back = np.roll(cap.rows, 1, axis=0)  # row t = the query at token t-1
            with pytest.raises(ValueError, match="no attention on its own CoT token"):
                check_row_convention(shifted_back, layout.cot_token_range)
            shifted_forward = cap.rows[1:]  # row t = the query at token t+1
            with pytest.raises(ValueError, match="attends to the next position"):
                check_row_convention(shifted_forward, (cot_start, layout.cot_token_range[1] - 1))


def test_attention_sinks_are_refused_by_the_recompute() -> None:
    model = build_model("llama", torch.float32)
    model.model.layers[1].self_attn.sinks = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(AttentionCaptureError, match="attention sinks"):
        capture(model, "recompute")


@pytest.mark.parametrize("method", ["eager", "recompute"])
def test_non_finite_attention_is_reported_per_sample_and_layer(method: str) -> None:
    model = build_model("qwen2", torch.float32)
    ids, _ = batch_inputs()
    cot_start, cot_end = LAYOUTS[1].cot_token_range
    poisoned = next(int(i) for i in ids[1, cot_start:cot_end] if int(i) not in ids[0].tolist())  # sample 1 only
    first = ids[1].tolist().index(poisoned)  # NaN from here on: its row and every later row's column
    with torch.no_grad():
        model.get_input_embeddings().weight[poisoned] = float("nan")
    captured = capture(model, method, JSDConfig(layers=(0, 1)))
    assert captured[0].nonfinite is None
    layer, row = captured[1].nonfinite
    assert layer == 0 and 0 <= row <= max(first, cot_start) - cot_start  # eager: masked NaN keys leak (NaN + min)
