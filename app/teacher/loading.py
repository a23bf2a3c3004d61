"""Load a causal LM + tokenizer through ``from_pretrained`` with attention weights available."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Teacher:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    revision: str | None
    dtype: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` → bf16 on a GPU that supports it, float32 on CPU."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto or one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_teacher(
    name_or_path: str,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    local_files_only: bool = True,
    trust_remote_code: bool = False,
    attn_implementation: str = "sdpa",
) -> Teacher:
    """Load a teacher by hub name or local directory.

    SDPA/flash kernels return no attention weights: the default ``recompute`` capture rebuilds
    the selected layers' CoT attention from their queries and keys; the ``eager`` capture needs
    ``attn_implementation="eager"`` and fails loudly on a model that returns no weights.
    """
    hf_logging.disable_progress_bar()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    common: dict[str, Any] = {
        "revision": revision,
        "local_files_only": local_files_only,
        "trust_remote_code": trust_remote_code,
    }
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **common)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name_or_path}: a fast tokenizer is required (char offset mappings)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=torch_dtype, attn_implementation=attn_implementation, **common
    )
    model.to(torch_device).eval()
    log.info(
        "loaded teacher %s (%s, %s, attention=%s, %d layers)",
        name_or_path, torch_dtype, torch_device, attn_implementation, model.config.num_hidden_layers,
    )
    return Teacher(model=model, tokenizer=tokenizer, name=name_or_path, revision=revision, dtype=str(torch_dtype).removeprefix("torch."))
