"""C3 extractor: (problem, step slot k, op) → per operand position, a pointer over candidates.

Candidates of one request, in this column order (M mentions, K = MAX_STEPS, V constants):
``[mention i × reading r]`` at ``3·i + r`` (r over :data:`app.inference.proposals.READINGS`),
``[step j]`` at ``3·M + j`` (valid for j < k), ``[constant c]`` at ``3·M + K + c``, ``[END]`` last.
Labels: C3 ``{"steps": [{"step", "op", "operands": [...]}, …]}``, teacher-forced on the gold op
and on the gold earlier steps (the prefix, :mod:`training.prefix`): the queries attend to the
tokens marked with how often each mention was already read and to one vector per earlier
step; mention keys carry the same read count and step keys the earlier step's vector.
Each of the ``MAX_OPERANDS`` positions is predicted independently (the contract's one
distribution per position); positions after the first END are ignored in the loss.
Mention keys are the frozen token states pooled over the mention's TOKENS (offset mapping).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import MAX_OPERANDS, MAX_STEPS, READINGS, Candidate, MentionView
from training.examples import (
    IGNORE, C3Example, c3_examples, constant_vocabulary, mention_features, mention_token_matrix, op_vocabulary,
)
from training.heads import HeadConfig, MentionFeatures, QueryDecoder, TokenProjector, unused_rank
from training.prefix import USE_LEVELS, PrefixArrays, PrefixMemory, prefix_arrays, prefix_tensors
from training.tasks import Corpus, Task

MASKED = -1e4
MAX_MENTIONS = 64  # fixed column layout for metrics/calibration rows (mentions beyond it are rare)
N_READINGS = len(READINGS)


class ExtractorHead(nn.Module):
    """(B, T, H) states + mentions + (slot, op, prefix) → (B, MAX_OPERANDS, C) candidate logits
    (invalid = MASKED)."""

    def __init__(self, cfg: HeadConfig, n_ops: int, n_constants: int):
        super().__init__()
        d = cfg.width
        self.n_constants = n_constants
        self.project = TokenProjector(cfg)
        self.prefix = PrefixMemory(cfg, n_ops)
        self.slot_emb = nn.Embedding(MAX_STEPS, d)
        self.op_emb = nn.Embedding(n_ops, d)
        self.position_emb = nn.Embedding(MAX_OPERANDS, d)
        self.decoder = QueryDecoder(cfg)
        self.query_out = nn.Linear(d, d)
        self.mention_key = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.reading_emb = nn.Embedding(N_READINGS, d)
        self.used_key = nn.Embedding(USE_LEVELS, d)
        self.features = MentionFeatures(cfg)
        self.rank_key = nn.Embedding(5, d)  # unused_rank: 0..3, 4 = already read
        self.step_emb = nn.Embedding(MAX_STEPS, d)
        self.distance_emb = nn.Embedding(MAX_STEPS + 1, d)
        self.step_key = nn.Linear(d, d)
        self.constant_emb = nn.Embedding(max(n_constants, 1), d)
        self.end_emb = nn.Parameter(torch.randn(d) * 0.1)
        self.scale = d ** -0.5

    def forward(self, states: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor, mention_mask: torch.Tensor,
                slot: torch.Tensor, op: torch.Tensor, rows: torch.Tensor, prefix: dict[str, torch.Tensor],
                mention_feats: torch.Tensor) -> torch.Tensor:
        """``states`` (U, T, H), ``mask`` (U, T), ``mentions`` (U, M, T), ``mention_mask`` (U, M),
        ``mention_feats`` (U, M, 3) of U distinct problems; ``rows`` (B,) maps each request to its
        problem; ``slot``, ``op`` (B,); ``prefix`` the requests' :func:`~training.prefix.prefix_tensors`
        over the M mentions."""
        b = slot.shape[0]
        memory = self.project(states)  # (U, T, d): once per problem, shared by its requests
        pooled_u = self.mention_key(mentions @ memory) + self.features(mention_feats)  # (U, M, d)
        pooled = pooled_u[rows]  # (B, M, d)
        context, slots, used = self.prefix(memory, mask, rows, (mentions > 0).float()[rows], pooled, **prefix)
        queries = (self.slot_emb(slot) + self.op_emb(op))[:, None, :] + self.position_emb.weight[None]  # (B, P, d)
        q = self.query_out(self.decoder(queries, context))  # (B, P, d)
        mention_mask = mention_mask[rows]
        pooled = pooled + self.used_key(used) + self.rank_key(unused_rank(used, mention_mask))  # (B, M, d)
        mention_keys = (pooled[:, :, None, :] + self.reading_emb.weight[None, None]).flatten(1, 2)  # (B, 3M, d)
        j = torch.arange(MAX_STEPS)
        distance = (slot[:, None] - j[None, :]).clamp(0, MAX_STEPS)  # (B, K)
        step_keys = self.step_emb.weight[None] + self.distance_emb(distance) + self.step_key(slots)  # (B, K, d)
        const_keys = self.constant_emb.weight[: self.n_constants][None].expand(b, -1, -1)  # (B, V, d)
        end_key = self.end_emb[None, None].expand(b, 1, -1)  # (B, 1, d)
        keys = torch.cat([mention_keys, step_keys, const_keys, end_key], dim=1)  # (B, C, d)
        logits = q @ keys.transpose(1, 2) * self.scale  # (B, P, C)
        valid = torch.cat([
            mention_mask.repeat_interleave(N_READINGS, dim=1),
            j[None, :] < slot[:, None],
            torch.ones(b, self.n_constants + 1, dtype=torch.bool),
        ], dim=1)  # (B, C)
        return logits.masked_fill(~valid[:, None, :], MASKED)


def mention_tensors(starts_ends: Sequence[tuple[np.ndarray, np.ndarray]], mentions: Sequence[Sequence[MentionView]],
                    t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, T) token-pooling matrices and (B, M) bool mask, M = max mentions in the batch."""
    m_max = max((len(m) for m in mentions), default=0)
    matrix = np.zeros((len(mentions), m_max, t_max), dtype=np.float32)
    mask = np.zeros((len(mentions), m_max), dtype=bool)
    for b, ((starts, ends), ms) in enumerate(zip(starts_ends, mentions)):
        matrix[b, : len(ms), : len(starts)] = mention_token_matrix(starts, ends, ms)
        mask[b, : len(ms)] = True
    return torch.from_numpy(matrix), torch.from_numpy(mask)


def mention_feature_tensor(mentions: Sequence[Sequence[MentionView]], m_max: int) -> torch.Tensor:
    """(U, M, 3) long :func:`~training.examples.mention_features` of U problems over M slots."""
    return torch.from_numpy(np.stack([mention_features(m, m_max) for m in mentions]) if mentions
                            else np.zeros((0, m_max, 3), dtype=np.int64))


def target_column(target: tuple, n_mentions: int, n_constants: int) -> int:
    """Column of a target tuple in a layout with ``n_mentions`` mention slots (IGNORE for ignore)."""
    kind = target[0]
    if kind == "problem":
        return N_READINGS * target[1] + target[2]
    if kind == "step":
        return N_READINGS * n_mentions + target[1]
    if kind == "constant":
        return N_READINGS * n_mentions + MAX_STEPS + target[1]
    if kind == "end":
        return N_READINGS * n_mentions + MAX_STEPS + n_constants
    return IGNORE


def candidate_of(column: int, n_mentions: int, constants: Sequence[str]) -> Candidate:
    """The contract's candidate tuple of a column (inverse of :func:`target_column`)."""
    if column < N_READINGS * n_mentions:
        return ("problem", column // N_READINGS, READINGS[column % N_READINGS])
    column -= N_READINGS * n_mentions
    if column < MAX_STEPS:
        return ("step", column)
    column -= MAX_STEPS
    if column < len(constants):
        return ("constant", constants[column])
    return ("end",)


class C3Task(Task):
    name = "C3"
    primary = "accuracy"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"ops": op_vocabulary(train.records), "constants": constant_vocabulary(train.records)}

    def examples(self, corpus: Corpus, maps) -> list[C3Example]:
        examples = c3_examples(corpus.records, corpus.mentions, maps["ops"], maps["constants"])
        return [e for e in examples if len(corpus.mentions[e.index]) <= MAX_MENTIONS]

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return ExtractorHead(cfg, len(maps["ops"]), len(maps["constants"]))

    def collate(self, corpus: Corpus, examples: Sequence[C3Example], maps) -> dict[str, torch.Tensor]:
        problems = sorted({e.index for e in examples})
        position = {p: u for u, p in enumerate(problems)}
        states, mask = corpus.states(problems)  # (U, T, H): each problem once
        encs = [corpus.encoded[p] for p in problems]
        ments = [corpus.mentions[p] for p in problems]
        mentions, mention_mask = mention_tensors([(x.starts, x.ends) for x in encs], ments, states.shape[1])
        m, v = mentions.shape[1], len(maps["constants"])
        targets = torch.tensor([[target_column(t, m, v) for t in e.targets] for e in examples], dtype=torch.long)
        prefixes = [prefix_arrays(e.prefix, len(corpus.mentions[e.index])) for e in examples]
        return {"states": states, "mask": mask, "mentions": mentions, "mention_mask": mention_mask,
                "slot": torch.tensor([e.slot for e in examples]), "op": torch.tensor([e.op for e in examples]),
                "rows": torch.tensor([position[e.index] for e in examples]), "targets": targets,
                "prefix": prefix_tensors(prefixes, m), "mention_feats": mention_feature_tensor(ments, m)}

    def _logits(self, head, batch) -> torch.Tensor:
        return head(batch["states"], batch["mask"], batch["mentions"], batch["mention_mask"], batch["slot"],
                    batch["op"], batch["rows"], batch["prefix"], batch["mention_feats"])

    def codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        v = len(maps["constants"])
        flat = [target_column(t, MAX_MENTIONS, v) for e in examples for t in e.targets]
        return {"operand": np.array([c for c in flat if c != IGNORE], dtype=np.int64)}

    def baseline_codes(self, examples, corpus, maps) -> dict[str, np.ndarray]:
        """Steps coded by distance (k - j), so "the previous step" is one class across slots."""
        v = len(maps["constants"])
        flat = []
        for e in examples:
            for t in e.targets:
                if t[0] == "step":
                    t = ("step", e.slot - t[1])
                flat.append(target_column(t, MAX_MENTIONS, v))
        return {"operand": np.array([c for c in flat if c != IGNORE], dtype=np.int64)}

    def loss(self, head, batch, weights) -> torch.Tensor:
        logits = self._logits(head, batch)  # (B, P, C)
        return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE)

    def outputs(self, head, batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        logits = self._logits(head, batch).flatten(0, 1).numpy().astype(np.float64)  # (B·P, C)
        targets = batch["targets"].flatten().numpy()
        keep = targets != IGNORE
        m = batch["mentions"].shape[1]
        # Re-lay the columns on the fixed MAX_MENTIONS layout so rows of all batches line up.
        width = N_READINGS * MAX_MENTIONS + logits.shape[1] - N_READINGS * m
        fixed = np.full((logits.shape[0], width), MASKED)
        fixed[:, : N_READINGS * m] = logits[:, : N_READINGS * m]
        fixed[:, N_READINGS * MAX_MENTIONS:] = logits[:, N_READINGS * m:]
        shifted = np.where(targets >= N_READINGS * m, targets + N_READINGS * (MAX_MENTIONS - m), targets)
        return {"operand": (fixed[keep], shifted[keep])}


def operand_distributions(head: ExtractorHead, states: torch.Tensor, mask: torch.Tensor,
                          starts: np.ndarray, ends: np.ndarray, mentions: Sequence[MentionView],
                          requests: Sequence[tuple[int, int, PrefixArrays]], constants: Sequence[str],
                          temperature: float, top: int | None = None) -> list[list[dict[Candidate, float]]]:
    """For one problem ((1, T, H) states) and requests ``[(slot, op index, prefix), …]``: per
    request, one calibrated candidate distribution per operand position (masked candidates
    omitted; with ``top``, only the ``top`` most probable candidates of each position — the
    search θ-collapses to at most ``top_k`` of them, so the rest is never read)."""
    n = len(requests)
    if n == 0:
        return []
    ment, ment_mask = mention_tensors([(starts, ends)], [mentions], states.shape[1])
    logits = head(states, mask, ment, ment_mask, torch.tensor([r[0] for r in requests]),
                  torch.tensor([r[1] for r in requests]), torch.zeros(n, dtype=torch.long),
                  prefix_tensors([r[2] for r in requests], ment.shape[1]), mention_feature_tensor([mentions], ment.shape[1]))
    probs = torch.softmax(logits / temperature, dim=-1).numpy()  # (n, P, C)
    probs = np.where((logits > MASKED / 2).numpy(), probs, -1.0)  # masked columns never kept
    width = min(top, probs.shape[-1]) if top else probs.shape[-1]
    best = np.argsort(-probs, axis=-1)[..., :width]  # (n, P, width) columns, most probable first
    best_p = np.take_along_axis(probs, best, axis=-1).tolist()
    candidates = [candidate_of(c, len(mentions), constants) for c in range(probs.shape[-1])]
    return [[{candidates[c]: p for c, p in zip(columns, ps) if p >= 0.0}
             for columns, ps in zip(request_columns, request_ps)]
            for request_columns, request_ps in zip(best.tolist(), best_p)]
