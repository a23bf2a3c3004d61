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


@dataclass
class FactoredMemory:
    """The memory of B requests over U problems without copying the problem's tokens per request:
    request r sees ``tokens[rows[r]] + level_emb[levels[r]]`` (T tokens) followed by its own
    ``slots[r]`` (K vectors); ``mask`` (B, T + K) is True where it may attend.

    ``tokens`` (U, T, d), ``rows`` (B,), ``levels`` (B, T) long, ``level_emb`` (L, d),
    ``slots`` (B, K, d)."""

    tokens: torch.Tensor
    rows: torch.Tensor
    levels: torch.Tensor
    level_emb: torch.Tensor
    slots: torch.Tensor
    mask: torch.Tensor

    def dense(self) -> torch.Tensor:
        """(B, T + K, d) — the memory written out per request."""
        return torch.cat([self.tokens[self.rows] + self.level_emb[self.levels], self.slots], dim=1)


def _factored_cross_attention(attn: nn.MultiheadAttention, x: torch.Tensor, memory: FactoredMemory) -> torch.Tensor:
    """``attn(x, memory.dense(), memory.dense())`` (eval mode) without the per-request (B, T, d)
    key/value projections: keys and values are linear in the memory, so the problem's tokens are
    projected once (U, T, d) and the level embeddings once (L, d); the request-specific parts are
    gathered scores (B, h, Q, T) and per-level attention sums. Exact up to float rounding."""
    b, q_len, d = x.shape
    h = attn.num_heads
    dh = d // h
    w_q, w_k, w_v = attn.in_proj_weight.split(d)
    b_q, b_k, b_v = attn.in_proj_bias.split(d)
    u, t = memory.tokens.shape[:2]
    q = ((x @ w_q.T + b_q) * dh ** -0.5).view(b, q_len, h, dh).transpose(1, 2)  # (B, h, Q, dh)
    keys = (memory.tokens @ w_k.T).view(u, t, h, dh).permute(0, 2, 3, 1)  # (U, h, dh, T)
    values = (memory.tokens @ w_v.T).view(u, t, h, dh).transpose(1, 2)  # (U, h, T, dh)
    if u > 1:
        keys, values = keys[memory.rows], values[memory.rows]
    n_levels = memory.level_emb.shape[0]
    level_k = (memory.level_emb @ w_k.T).view(n_levels, h, dh).permute(1, 2, 0)  # (h, dh, L)
    level_v = (memory.level_emb @ w_v.T).view(n_levels, h, dh).transpose(0, 1)  # (h, L, dh)
    index = memory.levels[:, None, None, :].expand(b, h, q_len, t)  # (B, h, Q, T)
    token_scores = q @ keys + (q @ level_k).gather(-1, index) + q @ b_k.view(h, dh, 1)  # (B, h, Q, T)
    slot_k = (memory.slots @ w_k.T + b_k).view(b, -1, h, dh).permute(0, 2, 3, 1)  # (B, h, dh, K)
    scores = torch.cat([token_scores, q @ slot_k], dim=-1)  # (B, h, Q, T + K)
    weights = torch.softmax(scores.masked_fill(~memory.mask[:, None, None, :], float("-inf")), dim=-1)
    on_tokens, on_slots = weights[..., :t], weights[..., t:]
    per_level = torch.zeros(b, h, q_len, n_levels, dtype=weights.dtype).scatter_add_(-1, index, on_tokens)
    slot_v = (memory.slots @ w_v.T + b_v).view(b, -1, h, dh).transpose(1, 2)  # (B, h, K, dh)
    out = (on_tokens @ values + per_level @ level_v + on_tokens.sum(-1, keepdim=True) * b_v.view(h, 1, dh)
           + on_slots @ slot_v)  # (B, h, Q, dh)
    return attn.out_proj(out.transpose(1, 2).reshape(b, q_len, d))


class QueryDecoder(nn.Module):
    """Q queries cross-attend to the projected tokens: (B, Q, d), (B, T, d) → (B, Q, d).

    The memory is a (B, T, d) tensor with its (B, T) mask, or a :class:`FactoredMemory`; in eval
    mode the latter is attended to without writing it out per request (the search asks about
    hundreds of partial programs of one problem at a time)."""

    def __init__(self, cfg: HeadConfig, layers: int | None = None):
        super().__init__()
        layer = nn.TransformerDecoderLayer(
            cfg.width, cfg.heads, dim_feedforward=2 * cfg.width, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers or cfg.layers)
        self.norm = nn.LayerNorm(cfg.width)
        self.factored = True  # False: always write a FactoredMemory out (for comparison)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor | FactoredMemory,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(memory, FactoredMemory):
            if self.training or not self.factored:
                return self.norm(self.decoder(queries, memory.dense(), memory_key_padding_mask=~memory.mask))
            return self.norm(self._factored(queries, memory))
        return self.norm(self.decoder(queries, memory, memory_key_padding_mask=~mask))  # (B, Q, d)

    def _factored(self, x: torch.Tensor, memory: FactoredMemory) -> torch.Tensor:
        """The decoder layers (pre-norm, eval mode) with :func:`_factored_cross_attention`."""
        for layer in self.decoder.layers:
            y = layer.norm1(x)
            x = x + layer.self_attn(y, y, y, need_weights=False)[0]
            x = x + _factored_cross_attention(layer.multihead_attn, layer.norm2(x), memory)
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return x if self.decoder.norm is None else self.decoder.norm(x)


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
