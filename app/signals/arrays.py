"""Array coercion shared by the signal modules: numpy or torch in, numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["to_numpy", "check_range", "as_offsets", "as_spans"]


def to_numpy(x: Any, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor of any dtype/device, or nested sequence) as a numpy array.

    Torch tensors are detached and moved to CPU; bf16/fp16 are upcast to float32 first
    (numpy has no bf16).  ``dtype`` casts the result (no copy when it already matches).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        if t.dtype.is_floating_point and t.element_size() < 4:
            t = t.float()
        x = t.numpy()
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def check_range(rng: tuple[int, int], upper: int, name: str) -> tuple[int, int]:
    """Validate a half-open index range ``(start, end)`` with ``0 <= start <= end <= upper``."""
    start, end = int(rng[0]), int(rng[1])
    if not 0 <= start <= end <= upper:
        raise ValueError(f"{name}={rng!r} is not a range inside [0, {upper}]")
    return start, end


def as_offsets(offsets: Any) -> np.ndarray:
    """A tokenizer offset mapping (list of pairs, array or tensor) → ``(n_tokens, 2)`` int64."""
    arr = to_numpy(offsets, np.int64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"offsets must be (n_tokens, 2), got shape {arr.shape}")
    return arr


def as_spans(spans: Any) -> np.ndarray:
    """Half-open ``(start, end)`` pairs (any sequence/array) → ``(k, 2)`` int64."""
    return to_numpy(spans, np.int64).reshape(-1, 2)
