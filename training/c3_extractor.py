"""C3 extractor: (problem, step slot k, op) → per operand position, a pointer over candidates.

Candidates of one request, in this column order (M mentions, K = MAX_STEPS, V constants):
``[mention i × reading r]`` at ``3·i + r`` (r over :data:`app.inference.proposals.READINGS`),
``[step j]`` at ``3·M + j`` (valid for j < k), ``[constant c]`` at ``3·M + K + c``, ``[END]`` last.
Labels: C3 ``{"steps": [{"step", "op", "operands": [...]}, …]}``, teacher-forced on the gold op
and on the gold earlier steps (the prefix, :mod:`training.prefix`): the queries attend to the
tokens marked with how often each mention was already read and to one vector per earlier
step; mention keys carry the same read count and step keys the earlier step's vector.
Position p ≥ 1 also reads the candidate at position p − 1 (``chained`` heads): a bilinear term
``(W key_prev) · key / √d`` is added to its logits, teacher-forced on the gold previous operand in
training and on the search's own choice at inference (:class:`~app.inference.proposals.Chained`),
so one step's operands are paired ("three toys at $10 each, two packs at $5": 3 with 10) instead
of being a product of per-position marginals. Heads saved before this (no ``chained`` map) keep
the independent positions. Positions after the first END are ignored in the loss.
Mention keys are the frozen token states pooled over the mention's TOKENS (offset mapping).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.inference.proposals import MAX_OPERANDS, MAX_STEPS, READINGS, Candidate, Chained, MentionView
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

    def __init__(self, cfg: HeadConfig, n_ops: int, n_constants: int, chained: bool = True):
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
        self.pair = nn.Linear(d, d, bias=False) if chained else None  # position p reads the candidate at p − 1
        if self.pair is not None:
            nn.init.zeros_(self.pair.weight)  # starts as independent positions

    def forward(self, states: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor, mention_mask: torch.Tensor,
                slot: torch.Tensor, op: torch.Tensor, rows: torch.Tensor, prefix: dict[str, torch.Tensor],
                mention_feats: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """``states`` (U, T, H), ``mask`` (U, T), ``mentions`` (U, M, T), ``mention_mask`` (U, M),
        ``mention_feats`` (U, M, 3) of U distinct problems; ``rows`` (B,) maps each request to its
        problem; ``slot``, ``op`` (B,); ``prefix`` the requests' :func:`~training.prefix.prefix_tensors`
        over the M mentions; ``previous`` (B, P) the column chosen at position p − 1 (< 0: none,
        and always none at p = 0) → (B, P, C) logits."""
        logits, keys, valid = self.scores(states, mask, mentions, mention_mask, slot, op, rows, prefix, mention_feats)
        if previous is not None and self.pair is not None:
            chosen = keys[torch.arange(len(keys))[:, None], previous.clamp(min=0)]  # (B, P, d)
            pair = self.pair(chosen) @ keys.transpose(1, 2) * self.scale  # (B, P, C)
            logits = logits + pair * (previous >= 0)[..., None]
        return logits.masked_fill(~valid[:, None, :], MASKED)

    def pair_scores(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, C, d) candidate keys → (B, C, C): the term added to a position's logit of column j
        when column i was chosen at the position before."""
        return self.pair(keys) @ keys.transpose(1, 2) * self.scale

    def scores(self, states: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor, mention_mask: torch.Tensor,
               slot: torch.Tensor, op: torch.Tensor, rows: torch.Tensor, prefix: dict[str, torch.Tensor],
               mention_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, P, C) logits before the pair term and masking, (B, C, d) candidate keys, (B, C) valid."""
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
        return logits, keys, valid


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
    code_version = "chained"

    def label_maps(self, train: Corpus) -> dict[str, Any]:
        return {"ops": op_vocabulary(train.records), "constants": constant_vocabulary(train.records), "chained": True}

    def examples(self, corpus: Corpus, maps) -> list[C3Example]:
        examples = c3_examples(corpus.records, corpus.mentions, maps["ops"], maps["constants"])
        return [e for e in examples if len(corpus.mentions[e.index]) <= MAX_MENTIONS]

    def build_head(self, cfg: HeadConfig, maps) -> nn.Module:
        return ExtractorHead(cfg, len(maps["ops"]), len(maps["constants"]), chained=bool(maps.get("chained")))

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
        """Teacher-forced: position p reads the gold operand at p − 1."""
        targets = batch["targets"]
        previous = torch.cat([torch.full_like(targets[:, :1], -1), targets[:, :-1]], dim=1)
        previous = torch.where(previous == IGNORE, torch.full_like(previous, -1), previous)
        return head(batch["states"], batch["mask"], batch["mentions"], batch["mention_mask"], batch["slot"],
                    batch["op"], batch["rows"], batch["prefix"], batch["mention_feats"], previous)

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
                          temperature: float, top: int | None = None) -> list[list[dict[Candidate, float] | Chained]]:
    """For one problem ((1, T, H) states) and requests ``[(slot, op index, prefix), …]``: per
    request, one calibrated candidate distribution per operand position (masked candidates
    omitted; with ``top``, only the ``top`` most probable candidates of each position — the
    search θ-collapses to at most ``top_k`` of them, so the rest is never read). A chained head's
    positions ≥ 1 are :class:`~app.inference.proposals.Chained`: the distribution after each
    previous candidate, computed when the search first asks for it."""
    n = len(requests)
    if n == 0:
        return []
    ment, ment_mask = mention_tensors([(starts, ends)], [mentions], states.shape[1])
    logits, keys, valid = head.scores(
        states, mask, ment, ment_mask, torch.tensor([r[0] for r in requests]), torch.tensor([r[1] for r in requests]),
        torch.zeros(n, dtype=torch.long), prefix_tensors([r[2] for r in requests], ment.shape[1]),
        mention_feature_tensor([mentions], ment.shape[1]))
    candidates = [candidate_of(c, len(mentions), constants) for c in range(logits.shape[-1])]
    scaled = (logits / temperature).numpy().astype(np.float64)  # (n, P, C)
    allowed = valid.numpy()  # (n, C)
    width = min(top, len(candidates)) if top else len(candidates)
    if head.pair is None:
        return [[_top_distribution(row, allowed[r], candidates, width) for row in scaled[r]] for r in range(n)]
    pair = (head.pair_scores(keys) / temperature).numpy().astype(np.float64)  # (n, C, C)
    column = {candidate: c for c, candidate in enumerate(candidates)}
    out = []
    for r in range(n):
        positions: list[dict[Candidate, float] | Chained] = [_top_distribution(scaled[r, 0], allowed[r], candidates, width)]
        for p in range(1, scaled.shape[1]):
            positions.append(Chained(_after(scaled[r, p], pair[r], allowed[r], candidates, column, width)))
        out.append(positions)
    return out


def _top_distribution(logits: np.ndarray, allowed: np.ndarray, candidates: Sequence[Candidate],
                      width: int) -> dict[Candidate, float]:
    """(C,) logits → the ``width`` most probable allowed candidates with their softmax probability."""
    z = np.where(allowed, logits, -np.inf)
    z = np.exp(z - z.max())
    probs = z / z.sum()
    best = np.argsort(-probs)[:width]
    return {candidates[c]: float(probs[c]) for c in best if allowed[c]}


def _after(logits: np.ndarray, pair: np.ndarray, allowed: np.ndarray, candidates: Sequence[Candidate],
           column: dict[Candidate, int], width: int):
    """``previous → distribution`` of one chained position ((C,) logits, (C, C) pair term), memoised."""
    memo: dict[Candidate, dict[Candidate, float]] = {}

    def given(previous: Candidate) -> dict[Candidate, float]:
        if previous not in memo:
            c = column.get(tuple(previous))
            memo[previous] = _top_distribution(logits if c is None else logits + pair[c], allowed, candidates, width)
        return memo[previous]

    return given
