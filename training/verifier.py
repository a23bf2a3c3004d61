"""Program verifier: (problem text, complete candidate program) → a logit that its answer is right.

The search's beam holds the right answer far more often than its vote picks it: the specialists
score each decision locally, so a short program that ignores half the problem can outscore the
right one. The verifier judges whole programs against the problem text. It is a
:class:`~training.prefix.PrefixClassifier` (the memory of C6's stop head: frozen token states,
mention read counts, one vector per step) with one output, whose step vectors also carry what
each step computed — sign, integer / two-decimal / other, magnitude bucket of its value — and
whose query carries the answer's and the search's own view of the path (its score, C6's
stop/continue product, C2's and C3's log probabilities, its length). It is trained on the
search's own executed candidates for TRAIN problems, labelled by whether their answer matches
gold (training data; inference only ever sees the weights), with a per-problem binary loss plus
a listwise one (softmax over the problem's candidates, mass on the right ones). Its logits become features of the candidate selector
(:mod:`app.inference.selector`).

Artifact: ``weights.safetensors`` + ``config.json`` (head config, op/constant vocabulary,
backbone, dev metrics) in ``MYCELIUM_HOME/models/selector/<specialists' version>/verifier``,
hashed like a specialist's (:func:`training.checkpoint.artifact_sha256`).

Shapes: B programs, U problems, T tokens, M mentions.
"""

from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from torch import nn

from app.attribution.program_view import value_key
from app.inference.proposals import MAX_STEPS
from training.checkpoint import CONFIG, WEIGHTS, artifact_sha256
from training.encoder import Backbone, encode_cached, load_backbone
from training.examples import MAGNITUDES, ProblemData, ProgramStep, magnitude_bucket, mentions_of
from training.heads import HeadConfig
from training.prefix import PrefixClassifier, contract_prefix, prefix_arrays, prefix_batch, problem_prefix_logits
from training.tasks import Corpus, positive_weight

VERIFIER_DIR = "verifier"
VALUE_SIGNS = 4  # 0 past the program, 1 positive, 2 negative, 3 zero
VALUE_KINDS = 4  # 0 past the program, 1 integer, 2 at most two decimals, 3 any other value

PATH_STATS = 5


def path_stats(path: Any) -> np.ndarray:
    """(5,) float32 of a complete :class:`app.inference.search.Path`: log score / 10, log of C6's
    stop/continue product / 5, Σ log C2 op probability / 5, Σ log C3 operand probability / 10,
    steps / ``MAX_STEPS`` (logs clipped at −60)."""
    def log(x: float) -> float:
        return max(math.log(max(x, 1e-30)), -60.0)

    return np.array([log(path.score) / 10.0, log(path.n_steps_p) / 5.0,
                     sum(log(step.op_p) for step in path.steps) / 5.0,
                     sum(log(p) for step in path.steps for p in step.operand_ps) / 10.0,
                     len(path.steps) / MAX_STEPS], dtype=np.float32)


def value_features(values: Sequence[Any]) -> np.ndarray:
    """(K, 3) int64 per step value (``Fraction`` or sympy number): sign, kind, magnitude bucket;
    zeros past the program."""
    out = np.zeros((MAX_STEPS, 3), dtype=np.int64)
    for k, value in enumerate(values[:MAX_STEPS]):
        if isinstance(value, Fraction):
            try:
                number = float(value)
            except OverflowError:  # beyond float range (a chain of MULs): only its sign matters here
                number = math.inf if value > 0 else -math.inf
            integer, cents = value.denominator == 1, (value * 100).denominator == 1
        else:
            try:
                number = float(complex(value.evalf()).real)
            except (TypeError, ValueError, AttributeError):
                number = float("nan")
            integer = cents = False
        sign = 3 if number == 0.0 else (2 if number < 0 else 1)
        out[k] = (sign, 1 if integer else (2 if cents else 3), magnitude_bucket(number))
    return out


class VerifierHead(nn.Module):
    """(problem, complete program, its step values) → (B, 1) logit that its answer is right."""

    def __init__(self, cfg: HeadConfig, n_ops: int, with_path_stats: bool = True):
        super().__init__()
        d = cfg.width
        self.cfg = cfg
        self.with_path_stats = with_path_stats  # False: judge the program, not the search's own scores of it
        self.score = PrefixClassifier(cfg, n_ops, 1)
        self.sign = nn.Embedding(VALUE_SIGNS, d)
        self.kind = nn.Embedding(VALUE_KINDS, d)
        self.magnitude = nn.Embedding(MAGNITUDES, d)
        self.answer = nn.Linear(d, d)
        self.stats = nn.Sequential(nn.Linear(PATH_STATS, d), nn.GELU(), nn.Linear(d, d)) if with_path_stats else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor, rows: torch.Tensor,
                prefix: dict[str, torch.Tensor], mention_feats: torch.Tensor, mention_mask: torch.Tensor,
                values: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """:class:`~training.prefix.PrefixClassifier` inputs plus ``values`` (B, K, 3) of
        :func:`value_features` and ``stats`` (B, 5) of :func:`path_stats` (ignored when built
        without ``with_path_stats``)."""
        slots = self.sign(values[..., 0]) + self.kind(values[..., 1]) + self.magnitude(values[..., 2])  # (B, K, d)
        last = (prefix["n_prefix"] - 1).clamp(min=0)
        answer = self.answer(slots[torch.arange(len(slots)), last])  # (B, d)
        if self.stats is not None:
            answer = answer + self.stats(stats)
        return self.score(states, mask, mentions, rows, prefix, mention_feats, mention_mask,
                          slot_extra=slots, query_extra=answer)


@dataclass(frozen=True)
class VerifierExample:
    """One problem (``index`` into the corpus) with candidate programs, their (K, 3) value
    features, (5,) path statistics and 0/1 labels."""

    index: int
    programs: list[list[ProgramStep]]
    values: list[np.ndarray]
    stats: list[np.ndarray]
    labels: list[int]


def step_value_keys(values: Sequence[Any]) -> Counter:
    """The multiset of a program's step results as canonical literals (``"1/2"`` for 0.5)."""
    return Counter(value_key(str(v)) for v in values)


def candidate_programs(groups: Sequence[Any], correct: Sequence[bool], limit: int = 24, positives: int = 4,
                       reference: Counter | None = None) -> tuple[list[Any], list[int]]:
    """The programs one problem contributes: the best path of each correct answer group (at most
    ``positives``), then the best path of the wrong groups in vote order, ``limit`` in all.

    ``groups`` are :class:`app.inference.search.AnswerGroup` (vote order); ``correct`` per group.
    With ``reference`` (:func:`step_value_keys` of the reference program's step results — training
    data), a right group contributes its best path that computes the reference's intermediate
    values (any order), and a right group with none is left out: many right answers in the beam
    are reached by accident (``3 × 3 + 1 = 10`` for "40 fruit, 3 times as many apples as
    oranges"), and a verifier taught that those programs are right learns the answer, not the
    reasoning.
    """
    if reference is None:
        right = [g.members[0].path for g, ok in zip(groups, correct) if ok][:positives]
    else:
        matching = ([m.path for m in g.members if step_value_keys(m.path.values) == reference]
                    for g, ok in zip(groups, correct) if ok)
        right = [paths[0] for paths in matching if paths][:positives]
    wrong = [g.members[0].path for g, ok in zip(groups, correct) if not ok][: max(0, limit - len(right))]
    return right + wrong, [1] * len(right) + [0] * len(wrong)


def program_inputs(paths: Sequence[Any], op_index: dict[str, int], constants: Sequence[str]):
    """Per complete path: its prefix steps in the verifier's vocabulary, value features, stats."""
    from app.inference.search import path_prefix

    return ([contract_prefix(path_prefix(p), op_index, constants) for p in paths],
            [value_features(p.values) for p in paths], [path_stats(p) for p in paths])


def verifier_corpus(rows: Sequence[tuple[str, Any, Sequence[bool]]], backbone: Backbone, ops: Sequence[str],
                    constants: Sequence[str], cache_dir: Path | None = None,
                    references: Mapping[str, Counter] | None = None) -> tuple[Corpus, list[VerifierExample]]:
    """Encode the problems of ``rows`` (text, :class:`~app.inference.selector.RankingInputs`,
    correct per group) and turn their candidates into examples (problems without a candidate
    are left out); ``references`` (text → :func:`step_value_keys` of its reference program)
    picks the positives by :func:`candidate_programs`' reference rule."""
    op_index = {op: k for k, op in enumerate(ops)}
    kept = [(text, ranking, labels) for text, ranking, labels in rows if ranking.groups]
    texts = [text for text, _, _ in kept]
    corpus = Corpus([ProblemData(i, text) for i, text in enumerate(texts)], encode_cached(backbone, texts, cache_dir))
    examples = []
    for index, (_, ranking, labels) in enumerate(kept):
        reference = references.get(texts[index]) if references is not None else None
        if references is not None and reference is None:
            raise ValueError(f"verifier candidates: no reference program for problem {texts[index][:60]!r}")
        paths, targets = candidate_programs(ranking.groups, labels, reference=reference)
        examples.append(VerifierExample(index, *program_inputs(paths, op_index, constants), targets))
    return corpus, examples


def collate(corpus: Corpus, examples: Sequence[VerifierExample]) -> dict[str, Any]:
    """A batch of problems with all their candidate programs (``target`` (B,) float 0/1)."""
    states, mask = corpus.states([e.index for e in examples])
    requests = [(b, program) for b, e in enumerate(examples) for program in e.programs]
    batch = {"states": states, "mask": mask, **prefix_batch(corpus, examples, requests, states.shape[1])}
    batch["values"] = torch.from_numpy(np.stack([v for e in examples for v in e.values]))
    batch["stats"] = torch.from_numpy(np.stack([v for e in examples for v in e.stats]))
    batch["problem"] = torch.tensor([b for b, e in enumerate(examples) for _ in e.labels])
    batch["target"] = torch.tensor([label for e in examples for label in e.labels], dtype=torch.float32)
    return batch


def batch_logits(head: VerifierHead, batch: dict[str, Any]) -> torch.Tensor:
    """(B,) logits of a :func:`collate` batch."""
    return head(batch["states"], batch["mask"], batch["mentions"], batch["rows"], batch["prefix"],
                batch["mention_feats"], batch["mention_mask"], batch["values"], batch["stats"])[:, 0]


def listwise_loss(logits: torch.Tensor, target: torch.Tensor, problem: torch.Tensor) -> torch.Tensor:
    """Mean over problems with a right candidate of −log Σ_right softmax(the problem's logits)."""
    n = int(problem.max()) + 1 if len(problem) else 0
    top = torch.full((n,), -torch.inf).scatter_reduce(0, problem, logits, "amax", include_self=True).detach()
    z = torch.exp(logits - top[problem])
    total = torch.zeros(n).index_add(0, problem, z)
    right = torch.zeros(n).index_add(0, problem, z * target)
    keep = right > 0
    if not keep.any():
        return logits.sum() * 0.0
    return -(torch.log(right[keep]) - torch.log(total[keep])).mean()


def top1_accuracy(head: VerifierHead, corpus: Corpus, examples: Sequence[VerifierExample],
                  batch_problems: int = 32) -> float:
    """Share of problems (with a right and a wrong candidate) whose highest-scored program is right."""
    usable = [e for e in examples if 0 < sum(e.labels) < len(e.labels)]
    hits = 0
    head.eval()
    with torch.no_grad():
        for start in range(0, len(usable), batch_problems):
            part = usable[start:start + batch_problems]
            logits = batch_logits(head, collate(corpus, part)).numpy()
            offset = 0
            for e in part:
                scores = logits[offset:offset + len(e.labels)]
                hits += e.labels[int(np.argmax(scores))]
                offset += len(e.labels)
    return hits / max(1, len(usable))


def warm_start(head: VerifierHead, stop: PrefixClassifier) -> int:
    """Start ``head``'s program scorer from C6's stop head (the same memory of tokens, mention
    reads and step vectors, trained on every TRAIN problem's reference prefixes): each parameter
    of matching shape is copied, the two-way output becomes one logit (stop − go on), and the
    verifier's own value and path-statistics inputs start at zero — before training it scores a
    complete program by how finished C6 finds it. Returns the number of tensors copied (0: the
    heads do not match and ``head`` is left as it was)."""
    own, theirs = head.score.state_dict(), stop.state_dict()
    shared = [k for k, v in theirs.items() if not k.startswith("out.") and k in own and own[k].shape == v.shape]
    weight, bias = theirs.get("out.weight"), theirs.get("out.bias")
    if (not shared or weight is None or weight.shape[0] != 2
            or weight.shape[1] != own["out.weight"].shape[1]):
        return 0
    for k in shared:
        own[k] = theirs[k].detach().clone()
    own["out.weight"] = (weight[1] - weight[0])[None].detach().clone()
    own["out.bias"] = (bias[1] - bias[0])[None].detach().clone()
    head.score.load_state_dict(own)
    with torch.no_grad():
        for module in (head.sign, head.kind, head.magnitude, head.answer) + ((head.stats[-1],) if head.stats else ()):
            for p in module.parameters():
                p.zero_()
    return len(shared) + 2


def train_verifier(corpus: Corpus, train: Sequence[VerifierExample], dev_corpus: Corpus,
                   dev: Sequence[VerifierExample], n_ops: int, hidden_size: int, epochs: int = 6,
                   batch_problems: int = 16, lr: float = 1e-3, patience: int = 2, seed: int = 0,
                   on_epoch: Callable[[int, float, float], None] | None = None,
                   init: PrefixClassifier | None = None, head_config: HeadConfig | None = None,
                   with_path_stats: bool = True) -> tuple[VerifierHead, dict[str, Any]]:
    """Fit the verifier (BCE, positives up-weighted) and keep the epoch with the best dev top-1
    (with no ``dev`` examples: train ``epochs`` epochs and keep the last);
    ``init`` (C6's stop head, built with ``head_config``) warm-starts it (:func:`warm_start`);
    ``with_path_stats=False`` leaves the search's own scores of a path out of its inputs (the
    verifier then judges the program against the text alone).

    Returns the head (eval mode) and metrics: dev top-1 of the verifier alone, the number of dev
    problems it was measured on, whether it was warm-started, and the per-epoch history.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = VerifierHead(head_config or HeadConfig(hidden_size=hidden_size), n_ops, with_path_stats)
    warm = warm_start(head, init) if init is not None else 0
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    pos_weight = torch.tensor(positive_weight(np.array([label for e in train for label in e.labels])))
    best, best_state, stale, history = -1.0, None, 0, []
    if warm:  # what C6's stop head alone makes of the candidates
        history.append({"epoch": 0, "loss": None, "dev_top1": top1_accuracy(head, dev_corpus, dev)})
    for epoch in range(epochs):
        head.train()
        losses = []
        order = rng.permutation(len(train))
        for start in range(0, len(order), batch_problems):
            batch = collate(corpus, [train[i] for i in order[start:start + batch_problems]])
            logits = batch_logits(head, batch)
            loss = (F.binary_cross_entropy_with_logits(logits, batch["target"], pos_weight=pos_weight)
                    + listwise_loss(logits, batch["target"], batch["problem"]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        score = top1_accuracy(head, dev_corpus, dev) if dev else None
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "dev_top1": score})
        if on_epoch is not None:
            on_epoch(epoch + 1, float(np.mean(losses)), score)
        if score is None:  # no dev examples: a fixed number of epochs
            best, best_state = -1.0, head.state_dict()
        elif score > best:
            best, best_state, stale = score, copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    usable = [e for e in dev if 0 < sum(e.labels) < len(e.labels)]
    return head, {"dev_top1": round(best, 4) if dev else None, "dev_problems": len(usable), "history": history,
                  "warm_start": "C6 stop head" if warm else None, "path_stats": with_path_stats,
                  "note": "dev problems with a right and a wrong candidate; top-1 among the sampled candidates"}


def save_verifier(directory: Path, head: VerifierHead, ops: Sequence[str], constants: Sequence[str],
                  backbone: Backbone, metrics: dict[str, Any]) -> str:
    """Write the artifact; returns its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(directory / WEIGHTS))
    config = {"head_config": head.cfg.to_dict(), "path_stats": head.with_path_stats, "ops": list(ops),
              "constants": list(constants), "metrics": metrics,
              "backbone": {"path": str(backbone.directory), "fingerprint": backbone.fingerprint,
                           "max_tokens": backbone.max_tokens, "layers": list(backbone.layers)}}
    (directory / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True))
    return artifact_sha256(directory)


class LoadedVerifier:
    """A verifier artifact ready for inference: ``logits(text, prefixes)``."""

    def __init__(self, directory: Path, device: str = "cpu"):
        config = json.loads((directory / CONFIG).read_text())
        self.sha256 = artifact_sha256(directory)
        self.ops, self.constants = list(config["ops"]), list(config["constants"])
        self.head = VerifierHead(HeadConfig(**config["head_config"]), len(self.ops), config.get("path_stats", True))
        self.head.load_state_dict(load_file(str(directory / WEIGHTS)))
        self.head.eval()
        info = config["backbone"]
        self.backbone = load_backbone(info["path"], device, int(info["max_tokens"]), info.get("layers", [-1]))
        if self.backbone.fingerprint != info["fingerprint"]:
            raise ValueError(f"verifier {directory}: backbone {info['path']} changed since training")
        self._op_index = {op: k for k, op in enumerate(self.ops)}

    def logits(self, text: str, paths: Sequence[Any]) -> list[float]:
        """One logit per complete :class:`app.inference.search.Path` of one problem, in one padded pass."""
        if not paths:
            return []
        enc = encode_cached(self.backbone, [text])[0]
        mentions = mentions_of(text)
        states = torch.from_numpy(enc.states.astype(np.float32))[None]
        mask = torch.ones(1, states.shape[1], dtype=torch.bool)
        steps, values, stats = program_inputs(paths, self._op_index, self.constants)
        arrays = [prefix_arrays(program, len(mentions)) for program in steps]
        with torch.no_grad():
            return problem_prefix_logits(self.head, states, mask, enc.starts, enc.ends, mentions, arrays,
                                         values=torch.from_numpy(np.stack(values)),
                                         stats=torch.from_numpy(np.stack(stats)))[:, 0].tolist()
