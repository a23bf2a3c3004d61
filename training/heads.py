"""Building blocks of the specialist heads (torch). Every head reads frozen token states.

Shapes: B problems (or requests), T tokens, H backbone hidden size, d head width, Q queries.
``mask`` is (B, T) bool with True on real tokens. Heads return logits, never probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """Sizes of a head; stored in the checkpoint next to the weights."""

    hidden_size: int  # H of the backbone
    width: int = 128  # d
    layers: int = 2  # decoder (or encoder) layers
    heads: int = 4
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class TokenProjector(nn.Module):
    """(B, T, H) frozen states → (B, T, d)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.hidden_size), nn.Linear(cfg.hidden_size, cfg.width), nn.GELU(), nn.Dropout(cfg.dropout)
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)  # (B, T, d)


class QueryDecoder(nn.Module):
    """Q queries cross-attend to the projected tokens: (B, Q, d), (B, T, d) → (B, Q, d)."""

    def __init__(self, cfg: HeadConfig, layers: int | None = None):
        super().__init__()
        layer = nn.TransformerDecoderLayer(
            cfg.width, cfg.heads, dim_feedforward=2 * cfg.width, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers or cfg.layers)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.decoder(queries, memory, memory_key_padding_mask=~mask))  # (B, Q, d)


class TokenContext(nn.Module):
    """One self-attention layer over the projected tokens: (B, T, d) → (B, T, d)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, dim_feedforward=2 * cfg.width, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens, src_key_padding_mask=~mask)


class SlotHead(nn.Module):
    """``n_queries`` learned queries decoded over the tokens: states → (B, n_queries, d)."""

    def __init__(self, cfg: HeadConfig, n_queries: int):
        super().__init__()
        self.project = TokenProjector(cfg)
        self.queries = nn.Parameter(torch.randn(n_queries, cfg.width) * 0.1)
        self.decoder = QueryDecoder(cfg)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        memory = self.project(states)  # (B, T, d)
        queries = self.queries.unsqueeze(0).expand(states.shape[0], -1, -1)  # (B, Q, d)
        return self.decoder(queries, memory, mask)  # (B, Q, d)


class MentionFeatures(nn.Module):
    """(U, M, 3) mention features (ordinal, magnitude bucket, kind; :func:`training.examples.mention_features`)
    → (U, M, d) embeddings added to the pooled mention vectors."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        from app.execution.numbers import NUMBER_KINDS
        from training.examples import MAGNITUDES, MENTION_ORDINALS

        self.ordinal = nn.Embedding(MENTION_ORDINALS, cfg.width)
        self.magnitude = nn.Embedding(MAGNITUDES, cfg.width)
        self.kind = nn.Embedding(len(NUMBER_KINDS), cfg.width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.ordinal(features[..., 0]) + self.magnitude(features[..., 1]) + self.kind(features[..., 2])


def unused_rank(used: torch.Tensor, mention_mask: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """(B, M) long: among the real mentions not read yet, 0 for the first in the text, 1 for the
    next, …, clipped to ``levels - 1``; ``levels`` for a mention already read (or padding)."""
    unused = (used == 0) & mention_mask
    rank = (torch.cumsum(unused.long(), dim=1) - 1).clamp(0, levels - 1)
    return torch.where(unused, rank, torch.full_like(rank, levels))
