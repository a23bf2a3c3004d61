"""The inference entry point: problem texts and models in, solutions out — never a gold answer.

``solve(texts, specialists)`` is structurally gold-blind: its only inputs are strings and the
loaded specialists, so nothing it computes can depend on a dataset's answers or reference
solutions. Storing results (``app.inference.store``) and comparing them with gold
(``app.evaluation``) are separate modules that run afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.inference.proposals import ANSWER_TYPES, Proposal, Specialists
from app.execution.program import rational_text
from app.inference.search import Path, SearchConfig, SearchResult, operand_value, search_with
from app.inference.selector import Selector, versioned

__all__ = ["Solution", "solve", "solve_proposal", "prediction_payloads", "WithSelector"]

TASKS = ("C1", "C2", "C3", "C4", "C5", "C6")


@dataclass
class Solution:
    """The pipeline's answer to one problem text.

    ``program`` has the ``programs.steps`` JSON shape; ``candidates`` every distinct surviving
    answer ``{"answer", "probability", "paths"}`` best first (for correct-in-beam);
    ``predictions`` maps a task (C1..C6) to its payload for the chosen program (label shape +
    probabilities) and ``confidences`` to one number per task; ``ms`` is wall time (the share of
    the batched C1/C2/C4/C5/C6 pass plus this problem's C3 pass and search).
    """

    text: str
    answer: str | None
    probability: float | None
    program: dict[str, Any] | None
    paths_explored: int
    disagreement: bool
    candidates: list[dict[str, Any]]
    no_answer_reason: str | None
    model_version: str
    model_versions: dict[str, str]
    ms: float
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    confidences: dict[str, float | None] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    features: list[list[float]] | None = None  # per candidate, app.inference.selector.FEATURES (not stored)
    ranking: Any = None  # app.inference.selector.RankingInputs, to fit a selector on (not stored)


class WithSelector:
    """Specialists plus a fitted candidate selector (and the program verifier it reads, if any):
    the pipeline whose ``model_version`` is the specialists' version with the selector's suffix
    (``….C6v2.S1a2b3c4d``). ``solve`` uses ``selector`` in its search config and ``verify`` to
    score the executed programs."""

    def __init__(self, specialists: Specialists, selector: Selector | None, verifier: Any = None):
        self.specialists = specialists
        self.selector = selector
        self.verifier = verifier  # training.verifier.LoadedVerifier (logits(text, prefixes))

    @property
    def model_version(self) -> str:
        return versioned(self.specialists.model_version, self.selector)

    def propose(self, texts: Sequence[str]) -> list[Proposal]:
        return self.specialists.propose(texts)

    def operands(self, text, requests):
        return self.specialists.operands(text, requests)

    def verify(self, text: str, paths) -> list[float] | None:
        """The verifier's logit per complete, executed path (None without a verifier)."""
        return self.verifier.logits(text, paths) if self.verifier is not None else None

    def __getattr__(self, name: str):
        return getattr(self.specialists, name)


def _optional(specialists: Specialists, method: str, text: str, prefixes):
    """A prefix-conditioned answer (``stops``: C6, ``next_ops``: C2, ``verify``: the program
    verifier), or None for specialists without that head."""
    call = getattr(specialists, method, None)
    return call(text, prefixes) if call is not None else None


def _pipeline_config(specialists: Specialists, config: SearchConfig) -> SearchConfig:
    """The search config with the pipeline's selector (a :class:`WithSelector`'s, else none)."""
    selector = specialists.selector if isinstance(specialists, WithSelector) else None
    return replace(config, selector=selector) if config.selector is not selector else config


def solve(texts: Sequence[str], specialists: Specialists, config: SearchConfig = SearchConfig(),
          batch_size: int = 32) -> list[Solution]:
    """Answer each problem text with the specialists (no gold anywhere).

    C1/C2/C4/C5/C6 run in one padded pass per ``batch_size`` texts; C6's stop head, C2's next-op
    head and C3 in one pass each per problem and slot for all the beam's partial programs.
    """
    config = _pipeline_config(specialists, config)
    solutions: list[Solution] = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        began = time.perf_counter()
        proposals = specialists.propose(batch)
        shared_ms = (time.perf_counter() - began) * 1000.0 / max(1, len(batch))
        for text, proposal in zip(batch, proposals):
            solutions.append(solve_proposal(text, proposal, specialists, config, shared_ms))
    return solutions


def solve_proposal(text: str, proposal: Proposal, specialists: Specialists,
                   config: SearchConfig = SearchConfig(), shared_ms: float = 0.0) -> Solution:
    """Search one problem whose C1/C2/C4/C5/C6 proposal is already computed."""
    began = time.perf_counter()
    config = _pipeline_config(specialists, config)
    result = search_with(proposal, lambda requests: specialists.operands(text, requests), config,
                         lambda prefixes: _optional(specialists, "stops", text, prefixes),
                         lambda prefixes: _optional(specialists, "next_ops", text, prefixes),
                         lambda prefixes: _optional(specialists, "verify", text, prefixes))
    ms = shared_ms + (time.perf_counter() - began) * 1000.0
    payloads, confidences = prediction_payloads(proposal, result)
    return Solution(
        text=text, answer=result.answer, probability=result.probability, program=result.program,
        paths_explored=result.paths_explored, disagreement=result.disagreement,
        candidates=result.candidates, no_answer_reason=result.no_answer_reason,
        model_version=specialists.model_version, model_versions=dict(proposal.model_versions),
        ms=ms, predictions=payloads, confidences=confidences, dropped=result.dropped, features=result.features,
        ranking=result.ranking,
    )


# --------------------------------------------------------------------------- predictions


def _regions(proposal: Proposal, threshold: float = 0.5) -> list[list[float]]:
    """C1: maximal runs of tokens with relevance ≥ threshold as ``[start, end, mean score]`` (chars)."""
    relevance = np.asarray(proposal.relevance, dtype=float)
    starts, ends = np.asarray(proposal.token_starts), np.asarray(proposal.token_ends)
    regions: list[list[float]] = []
    run: list[int] = []
    for index in range(len(relevance) + 1):
        if index < len(relevance) and relevance[index] >= threshold and ends[index] > starts[index]:
            run.append(index)
            continue
        if run:
            regions.append([int(starts[run[0]]), int(ends[run[-1]]),
                            round(float(relevance[run].mean()), 4)])
            run = []
    return regions


def _operand_label(candidate: tuple, proposal: Proposal) -> dict[str, Any]:
    """A C3 candidate in the label payload shape."""
    if candidate[0] == "problem":  # value: the operand value under its reading (label invariant)
        mention = proposal.mentions[int(candidate[1])]
        return {"kind": "problem", "start": mention.start, "end": mention.end,
                "value": rational_text(operand_value(candidate, proposal)), "reading": candidate[2]}
    if candidate[0] == "step":
        return {"kind": "step", "ref": int(candidate[1]) + 1}
    return {"kind": "constant", "value": str(candidate[1])}


def _argmax_path(proposal: Proposal) -> tuple[int, list[str]]:
    """Without a chosen program: C6's most probable step count and C2's top op per slot."""
    probs = np.asarray(proposal.answer_step_probs, dtype=float)
    n_steps = int(probs.argmax()) + 1 if probs.size else 0
    ops = [op for op in proposal.ops]
    op_probs = np.asarray(proposal.op_probs, dtype=float)
    chosen = []
    for slot in range(min(n_steps, len(op_probs))):
        order = np.argsort(-op_probs[slot])
        chosen.append(next((ops[i] for i in order if ops[i] != "NONE"), ops[int(order[0])]))
    return n_steps, chosen


def prediction_payloads(proposal: Proposal, result: SearchResult) -> tuple[dict[str, dict[str, Any]], dict[str, float | None]]:
    """Per task, the payload for the chosen program (label shape + probabilities) and a confidence.

    Without a chosen program the payloads describe the specialists' top choices (C3 empty).
    """
    path: Path | None = result.chosen
    op_probs = np.asarray(proposal.op_probs, dtype=float)
    op_index = {op: i for i, op in enumerate(proposal.ops)}
    if path is not None:
        n_steps = path.n_steps
        ops = [step.op for step in path.steps]
    else:
        n_steps, ops = _argmax_path(proposal)
    payloads: dict[str, dict[str, Any]] = {}
    confidences: dict[str, float | None] = {}

    regions = _regions(proposal)
    operand_spans = sorted({(o["start"], o["end"]) for step in (result.program or {}).get("steps", [])
                            for o in step["operands"] if o["kind"] == "problem"})
    payloads["C1"] = {"regions": regions, "operand_spans": [list(span) for span in operand_spans]}
    confidences["C1"] = round(float(np.mean([r[2] for r in regions])), 6) if regions else None

    c2_steps = []
    for slot, op in enumerate(ops):
        row = op_probs[slot] if slot < len(op_probs) else np.zeros(len(proposal.ops))
        order = np.argsort(-row)[:3]
        c2_steps.append({"step": slot + 1, "op": op, "p": round(float(row[op_index[op]]), 6) if op in op_index else None,
                         "top": [[proposal.ops[i], round(float(row[i]), 6)] for i in order]})
    payloads["C2"] = {"steps": c2_steps}
    confidences["C2"] = round(float(np.prod([s["p"] or 0.0 for s in c2_steps])), 6) if c2_steps else None

    c3_steps = []
    if path is not None:
        for slot, step in enumerate(path.steps):
            c3_steps.append({"step": slot + 1, "op": step.op,
                             "operands": [_operand_label(c, proposal) for c in step.operands],
                             "p": [round(p, 6) for p in step.operand_ps]})
    payloads["C3"] = {"steps": c3_steps}
    confidences["C3"] = round(float(np.prod([p for s in c3_steps for p in s["p"]])), 6) if c3_steps else None

    used_constants = sorted({o["value"] for s in (result.program or {}).get("steps", [])
                             for o in s["operands"] if o["kind"] == "constant"})
    probs = {k: round(float(v), 6) for k, v in sorted(proposal.constant_probs.items())}
    payloads["C4"] = {"constants": used_constants, "predicted": sorted(k for k, v in probs.items() if v >= 0.5),
                      "probs": probs}
    confidences["C4"] = round(float(np.prod([probs.get(c, 0.0) for c in used_constants])), 6) if used_constants else None

    depends = np.asarray(proposal.depends, dtype=float)
    edges: list[list[int]] = []
    if path is not None:
        edges = sorted({(int(c[1]) + 1, slot + 1) for slot, step in enumerate(path.steps)
                        for c in step.operands if c[0] == "step"})
        edges = [list(edge) for edge in edges]
    else:
        edges = [[i + 1, j + 1] for i in range(min(n_steps, len(depends))) for j in range(i + 1, min(n_steps, len(depends)))
                 if depends[i, j] >= 0.5]
    edge_p = {f"{i}-{j}": round(float(depends[i - 1, j - 1]), 6) for i, j in edges
              if i - 1 < depends.shape[0] and j - 1 < depends.shape[1]} if depends.ndim == 2 else {}
    payloads["C5"] = {"n_steps": n_steps, "edges": edges, "p": edge_p}
    confidences["C5"] = round(float(np.prod(list(edge_p.values()))), 6) if edge_p else None

    answer_probs = np.asarray(proposal.answer_step_probs, dtype=float)
    type_probs = {t: round(float(proposal.answer_type.get(t, 0.0)), 6) for t in ANSWER_TYPES}
    answer_type = max(type_probs, key=lambda t: type_probs[t]) if type_probs else None
    step_p = round(float(answer_probs[n_steps - 1]), 6) if 0 < n_steps <= len(answer_probs) else None
    payloads["C6"] = {"answer_step": n_steps if n_steps else None, "n_steps": n_steps, "answer_type": answer_type,
                      "p": step_p, "type_probs": type_probs}
    confidences["C6"] = step_p
    return payloads, confidences
