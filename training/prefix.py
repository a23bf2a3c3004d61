"""Prefix conditioning: what the earlier steps of a (partial) program look like to C3 and C6.

C3 (which operands does step k read?) and C6's stop head (does the program end after step k?)
condition on the steps already taken, so "the next step reads the previous result and a number
not used yet" and "every number is used: stop" are learnable. A prefix is given as
:data:`training.examples.ProgramStep` tuples (op index, operand targets); :func:`prefix_arrays`
turns it into fixed-size arrays (pure numpy), :func:`prefix_tensors` batches them, and
:class:`PrefixMemory` (each head has its own) adds it to the head's token memory:

* every token of a number mention gets an embedding of how often the prefix read it (0, 1, ≥ 2);
* one vector per earlier slot j — its op, its slot, whether a later prefix step consumed its
  result, and the mean of the mentions it read — is appended to the memory (masked past the
  prefix), so queries can attend to the program so far.

Shapes: B requests, T tokens, M mentions, K = ``MAX_STEPS`` slots, d head width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.inference.proposals import MAX_STEPS, READINGS, Prefix
from training.examples import ProgramStep
from training.heads import FactoredMemory, HeadConfig, MentionFeatures, QueryDecoder, TokenProjector

USE_LEVELS = 3  # a mention read 0, 1, or ≥ 2 times
UNREAD_LEVELS = 8  # mentions not read yet: 0..6, ≥ 7


@dataclass(frozen=True)
class PrefixArrays:
    """One prefix as arrays: ``used`` (M,) reads per mention, ``ops`` (K,) op index per slot
    (0 past the prefix), ``consumed`` (K,) 1 when a later prefix step reads slot j, ``mentions``
    (K, M) 1/n over the mentions slot j reads, ``n`` the prefix length."""

    used: np.ndarray
    ops: np.ndarray
    consumed: np.ndarray
    mentions: np.ndarray
    n: int


def prefix_arrays(steps: Sequence[ProgramStep], n_mentions: int) -> PrefixArrays:
    """Arrays of a prefix of (op index, operand targets) steps over a problem with ``n_mentions``."""
    used = np.zeros(n_mentions, dtype=np.float32)
    ops = np.zeros(MAX_STEPS, dtype=np.int64)
    consumed = np.zeros(MAX_STEPS, dtype=np.int64)
    mentions = np.zeros((MAX_STEPS, n_mentions), dtype=np.float32)
    for j, (op, targets) in enumerate(steps[:MAX_STEPS]):
        ops[j] = op
        read = [t[1] for t in targets if t[0] == "problem" and t[1] is not None and t[1] < n_mentions]
        for i in read:
            used[i] += 1.0
            mentions[j, i] += 1.0 / len(read)
        for t in targets:
            if t[0] == "step" and 0 <= t[1] < j:
                consumed[t[1]] = 1
    return PrefixArrays(used, ops, consumed, mentions, min(len(steps), MAX_STEPS))


def contract_prefix(prefix: Prefix, op_index: Mapping[str, int], constants: Sequence[str]) -> list[ProgramStep]:
    """The search's :data:`~app.inference.proposals.Prefix` (op names, candidate tuples) as
    (op index, targets) steps; unknown ops map to index 0, unknown constants to ``("ignore",)``."""
    const_index = {c: k for k, c in enumerate(constants)}
    steps: list[ProgramStep] = []
    for step in prefix:
        targets = []
        for c in step.operands:
            if c[0] == "problem":
                targets.append(("problem", int(c[1]), READINGS.index(c[2]) if c[2] in READINGS else 0))
            elif c[0] == "step":
                targets.append(("step", int(c[1])))
            elif c[0] == "constant" and str(c[1]) in const_index:
                targets.append(("constant", const_index[str(c[1])]))
            else:
                targets.append(("ignore",))
        steps.append((op_index.get(step.op, 0), tuple(targets)))
    return steps


def prefix_tensors(prefixes: Sequence[PrefixArrays], m_max: int) -> dict[str, torch.Tensor]:
    """Batch prefixes over a mention layout of width ``m_max`` (B requests)."""
    b = len(prefixes)
    used = np.zeros((b, m_max), dtype=np.float32)
    mentions = np.zeros((b, MAX_STEPS, m_max), dtype=np.float32)
    for r, p in enumerate(prefixes):
        m = min(len(p.used), m_max)
        used[r, :m] = p.used[:m]
        mentions[r, :, :m] = p.mentions[:, :m]
    return {
        "used": torch.from_numpy(used),
        "step_ops": torch.from_numpy(np.stack([p.ops for p in prefixes]) if b else np.zeros((0, MAX_STEPS), np.int64)),
        "consumed": torch.from_numpy(np.stack([p.consumed for p in prefixes]) if b else np.zeros((0, MAX_STEPS), np.int64)),
        "step_mentions": torch.from_numpy(mentions),
        "n_prefix": torch.tensor([p.n for p in prefixes], dtype=torch.long),
    }


class PrefixMemory(nn.Module):
    """Token memory + prefix → a :class:`~training.heads.FactoredMemory` (T tokens marked with
    their mention's read count, then K slot vectors, masked past the prefix), the (B, K, d) slot
    vectors, and (B, M) how often each mention was read (clipped to ``USE_LEVELS - 1``)."""

    def __init__(self, cfg: HeadConfig, n_ops: int):
        super().__init__()
        d = cfg.width
        self.used_emb = nn.Embedding(USE_LEVELS, d)
        self.op_emb = nn.Embedding(max(n_ops, 1), d)
        self.slot_emb = nn.Embedding(MAX_STEPS, d)
        self.consumed_emb = nn.Embedding(2, d)
        self.read = nn.Linear(d, d)
        nn.init.zeros_(self.used_emb.weight)  # starts as the unconditioned memory

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, rows: torch.Tensor, mention_tokens: torch.Tensor,
                pooled: torch.Tensor, used: torch.Tensor, step_ops: torch.Tensor, consumed: torch.Tensor,
                step_mentions: torch.Tensor, n_prefix: torch.Tensor, slot_extra: torch.Tensor | None = None):
        """``tokens`` (U, T, d) and ``token_mask`` (U, T) of U problems, ``rows`` (B,) each
        request's problem, ``mention_tokens`` (B, M, T) 0/1 membership, ``pooled`` (B, M, d)
        mention vectors, prefix tensors of :func:`prefix_tensors`; ``slot_extra`` (B, K, d) is
        added to the slot vectors (the verifier's step values)."""
        used_level = used.round().long().clamp(0, USE_LEVELS - 1)  # (B, M)
        token_level = torch.bmm(used_level.float()[:, None, :], mention_tokens).squeeze(1)  # (B, T)
        slots = (self.op_emb(step_ops) + self.slot_emb.weight[None] + self.consumed_emb(consumed)
                 + self.read(torch.bmm(step_mentions, pooled)))  # (B, K, d)
        if slot_extra is not None:
            slots = slots + slot_extra
        slot_mask = torch.arange(MAX_STEPS)[None, :] < n_prefix[:, None]  # (B, K)
        memory = FactoredMemory(tokens, rows, token_level.round().long().clamp(0, USE_LEVELS - 1),
                                self.used_emb.weight, slots, torch.cat([token_mask[rows], slot_mask], dim=1))
        return memory, slots, used_level


class PrefixClassifier(nn.Module):
    """One query per request decoded over its prefix-conditioned memory → (B, n_out) logits.

    Inputs: (U, T, H) frozen states and (U, T) mask of U problems, (U, M, T) mention pooling
    matrices, ``rows`` (B,) each request's problem, ``prefix`` the requests' :func:`prefix_tensors`.
    C2 uses it for the next op after a prefix, C6 for whether a prefix is complete.
    """

    def __init__(self, cfg: HeadConfig, n_ops: int, n_out: int):
        super().__init__()
        d = cfg.width
        self.project = TokenProjector(cfg)
        self.mention_key = nn.Linear(d, d)
        self.features = MentionFeatures(cfg)
        self.prefix = PrefixMemory(cfg, n_ops)
        self.query = nn.Parameter(torch.randn(1, d) * 0.1)
        self.length_emb = nn.Embedding(MAX_STEPS + 1, d)
        self.unread_emb = nn.Embedding(UNREAD_LEVELS, d)
        self.decoder = QueryDecoder(cfg)
        self.out = nn.Linear(d, n_out)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor, rows: torch.Tensor,
                prefix: dict[str, torch.Tensor], mention_feats: torch.Tensor, mention_mask: torch.Tensor,
                slot_extra: torch.Tensor | None = None, query_extra: torch.Tensor | None = None) -> torch.Tensor:
        """``slot_extra`` (B, K, d) / ``query_extra`` (B, d): optional vectors added to the slot
        vectors and to the query (the verifier's step and answer values)."""
        memory = self.project(states)  # (U, T, d)
        pooled = (self.mention_key(mentions @ memory) + self.features(mention_feats))[rows]  # (B, M, d)
        context, _, used = self.prefix(memory, mask, rows, (mentions > 0).float()[rows], pooled, **prefix,
                                       slot_extra=slot_extra)
        unread = ((used == 0) & mention_mask[rows]).sum(dim=1).clamp(max=UNREAD_LEVELS - 1)  # (B,)
        q = (self.query[None] + self.length_emb(prefix["n_prefix"])[:, None, :]
             + self.unread_emb(unread)[:, None, :])  # (B, 1, d)
        if query_extra is not None:
            q = q + query_extra[:, None, :]
        return self.out(self.decoder(q, context)[:, 0])  # (B, n_out)


def prefix_batch(corpus, examples: Sequence, requests: Sequence[tuple[int, Sequence[ProgramStep]]],
                 t_max: int) -> dict[str, torch.Tensor]:
    """Tensors of prefix requests over a batch of problems: ``requests`` is (position of the
    problem in ``examples``, prefix steps); returns ``mentions`` (U, M, T), ``rows``, ``prefix``."""
    from training.c3_extractor import mention_feature_tensor, mention_tensors

    encoded = [corpus.encoded[e.index] for e in examples]
    views = [corpus.mentions[e.index] for e in examples]
    mentions, mention_mask = mention_tensors([(x.starts, x.ends) for x in encoded], views, t_max)
    arrays = [prefix_arrays(steps, len(corpus.mentions[examples[row].index])) for row, steps in requests]
    return {"mentions": mentions, "mention_mask": mention_mask, "mention_feats": mention_feature_tensor(views, mentions.shape[1]),
            "rows": torch.tensor([row for row, _ in requests], dtype=torch.long),
            "prefix": prefix_tensors(arrays, mentions.shape[1])}


def batch_prefix_logits(head: PrefixClassifier | None, batch: dict) -> torch.Tensor | None:
    """(B, n_out) logits of a training batch's prefix requests (:func:`prefix_batch` keys plus
    ``states``/``mask``), or None without a head or requests."""
    if head is None or len(batch["rows"]) == 0:
        return None
    return head(batch["states"], batch["mask"], batch["mentions"], batch["rows"], batch["prefix"],
                batch["mention_feats"], batch["mention_mask"])


def problem_prefix_logits(head: nn.Module, states: torch.Tensor, mask: torch.Tensor, starts: np.ndarray,
                          ends: np.ndarray, mentions: Sequence, prefixes: Sequence[PrefixArrays],
                          **extra: torch.Tensor) -> torch.Tensor:
    """(n, n_out) logits of ``head`` (a :class:`PrefixClassifier` or one with its inputs plus
    ``extra``) for one problem ((1, T, H) states) and n prefixes."""
    from training.c3_extractor import mention_feature_tensor, mention_tensors

    ment, ment_mask = mention_tensors([(starts, ends)], [mentions], states.shape[1])
    return head(states, mask, ment, torch.zeros(len(prefixes), dtype=torch.long), prefix_tensors(prefixes, ment.shape[1]),
                mention_feature_tensor([mentions], ment.shape[1]), ment_mask, **extra)
