"""Loaded C1–C6 models implementing :class:`app.inference.proposals.Specialists` for the search.

``load_specialists(session, model_version=None)`` reads the ``models`` rows (the latest version
of each specialist, or the versions named by ``"C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"``), checks each
artifact's sha256 and loads heads + temperatures; the frozen backbone of each is loaded once and
shared by the heads that use it. Everything reads problem text only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import LabelTask, SpecialistModel
from app.errors import UserError
from app.inference.proposals import ANSWER_TYPES, Candidate, OperandRequest, Prefix, Proposal
from training.c1_segmenter import relevance
from training.c2_classifier import next_op_probs, op_probs
from training.c3_extractor import operand_distributions
from training.c4_implicit import constant_probs
from training.c5_dependency import depends
from training.c6_answer import answer_probs, stop_probs
from training.catalog import SPECIALISTS
from training.checkpoint import artifact_sha256, load_artifact
from training.encoder import Backbone, Encoded, encode_cached, load_backbone
from training.examples import NONE_OP, mentions_of, pad_states
from training.prefix import contract_prefix, prefix_arrays

_VERSION_PART = re.compile(r"(C[1-6])(v\d+)")


class SpecialistsError(UserError, LookupError):
    """A model set that cannot be loaded (message: one line naming the model and the problem)."""


@dataclass
class LoadedSpecialist:
    """One loaded specialist: its row's identity, head (eval mode), artifact config."""

    specialist: str
    version: str
    model_id: int
    head: torch.nn.Module
    config: dict[str, Any]
    backbone: Backbone

    @property
    def temperatures(self) -> dict[str, float]:
        return self.config["temperatures"]

    @property
    def maps(self) -> dict[str, Any]:
        return self.config["maps"]


def parse_model_version(text: str) -> dict[str, str]:
    """``"C1v1.C2v3…"`` → ``{"C1": "v1", "C2": "v3", …}`` (all six required)."""
    parts = dict(_VERSION_PART.fullmatch(p).groups() for p in text.split(".") if _VERSION_PART.fullmatch(p))
    if sorted(parts) != list(SPECIALISTS) or len(text.split(".")) != len(SPECIALISTS):
        raise SpecialistsError(f"model version {text!r}: expected six parts like C1v1.C2v1.C3v1.C4v1.C5v1.C6v1")
    return parts


def _rows(session: Session, model_version: str | None) -> list[SpecialistModel]:
    wanted = parse_model_version(model_version) if model_version else None
    rows = []
    for specialist in SPECIALISTS:
        query = select(SpecialistModel).where(SpecialistModel.specialist == LabelTask(specialist))
        if wanted:
            query = query.where(SpecialistModel.version == wanted[specialist])
        else:
            query = query.order_by(SpecialistModel.id.desc()).limit(1)
        row = session.scalars(query).first()
        if row is None:
            what = f"{specialist}{wanted[specialist]}" if wanted else f"any {specialist} model"
            raise SpecialistsError(f"no trained {what} in the model registry; run `mycelium train`")
        rows.append(row)
    return rows


def load_specialists(session: Session, model_version: str | None = None, device: str = "cpu") -> "TrainedSpecialists":
    """The six specialists at ``model_version`` (None: the latest version of each)."""
    loaded = {}
    for row in _rows(session, model_version):
        path = Path(row.artifact_path or "")
        name = f"{row.specialist}{row.version}"
        if not path.is_dir():
            raise SpecialistsError(f"model {name}: artifact {path} is missing")
        if row.artifact_sha256 and artifact_sha256(path) != row.artifact_sha256:
            raise SpecialistsError(f"model {name}: artifact {path} does not match its sha256")
        head, config = load_artifact(path)
        info = config["backbone"]
        backbone = load_backbone(info["path"], device, int(info["max_tokens"]), info.get("layers", [-1]))
        if backbone.fingerprint != info["fingerprint"]:
            raise SpecialistsError(f"model {name}: backbone {info['path']} changed since training")
        loaded[str(row.specialist)] = LoadedSpecialist(str(row.specialist), row.version, row.id, head, config, backbone)
    return TrainedSpecialists(loaded)


class TrainedSpecialists:
    """The :class:`~app.inference.proposals.Specialists` protocol over six loaded heads."""

    def __init__(self, specialists: dict[str, LoadedSpecialist], batch_size: int = 32, operand_top: int | None = 8):
        self.specialists = specialists
        self.batch_size = batch_size
        self.operand_top = operand_top  # C3 candidates returned per operand position (None: all)
        self._problem: tuple[str, str, Any] | None = None  # (backbone key, text, (enc, states, mentions))
        self._arrays: dict[tuple[str, Prefix], Any] = {}  # (specialist, prefix) → PrefixArrays, one problem
        self._arrays_text: str | None = None

    @property
    def model_version(self) -> str:
        return ".".join(f"{s}{self.specialists[s].version}" for s in SPECIALISTS)

    @property
    def model_ids(self) -> dict[str, int]:
        return {s: m.model_id for s, m in self.specialists.items()}

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(self.specialists["C2"].maps["ops"])

    def _encode(self, backbone: Backbone, texts: Sequence[str]) -> list[Encoded]:
        return encode_cached(backbone, texts)

    def _batched(self, name: str, encoded: Sequence[Encoded]):
        for start in range(0, len(encoded), self.batch_size):
            states, mask = pad_states([e.states for e in encoded[start:start + self.batch_size]])
            yield start, torch.from_numpy(states), torch.from_numpy(mask)

    def propose(self, texts: Sequence[str]) -> list[Proposal]:
        """C1, C2, C4, C5, C6 for a batch of problem texts (padded passes of ``batch_size``)."""
        texts = list(texts)
        if not texts:
            return []
        encodings: dict[str, list[Encoded]] = {}
        outputs: dict[str, list[Any]] = {s: [None] * len(texts) for s in ("C1", "C2", "C4", "C5", "C6")}
        with torch.no_grad():
            for name in outputs:
                spec = self.specialists[name]
                key = spec.backbone.fingerprint + str(spec.backbone.max_tokens)
                if key not in encodings:
                    encodings[key] = self._encode(spec.backbone, texts)
                enc = encodings[key]
                t = spec.temperatures
                for start, states, mask in self._batched(name, enc):
                    if name == "C1":
                        out = relevance(spec.head, states, mask, t["token"])
                    elif name == "C2":
                        out = op_probs(spec.head, states, mask, t["op"])
                    elif name == "C4":
                        out = constant_probs(spec.head, states, mask, t["constant"])
                    elif name == "C5":
                        out = depends(spec.head, states, mask, t["pair"])
                    else:
                        slot, kind = answer_probs(spec.head, states, mask, t)
                        out = list(zip(slot, kind))
                    for i in range(len(states)):
                        outputs[name][start + i] = out[i]
                if name == "C1":
                    c1_enc = enc
        constants = self.specialists["C4"].maps["constants"]
        versions = {s: m.version for s, m in self.specialists.items()}
        proposals = []
        for i, text in enumerate(texts):
            enc = c1_enc[i]
            keep = enc.is_text
            slot, kind = outputs["C6"][i]
            proposals.append(Proposal(
                text=text,
                mentions=mentions_of(text),
                token_starts=enc.starts[keep].astype(np.int64),
                token_ends=enc.ends[keep].astype(np.int64),
                relevance=np.asarray(outputs["C1"][i][: len(enc.starts)][keep], dtype=np.float64),
                ops=self.ops,
                op_probs=np.asarray(outputs["C2"][i], dtype=np.float64),
                answer_step_probs=np.asarray(slot, dtype=np.float64),
                answer_type={t: float(p) for t, p in zip(ANSWER_TYPES, kind)},
                constant_probs={c: float(p) for c, p in zip(constants, outputs["C4"][i])},
                depends=np.asarray(outputs["C5"][i], dtype=np.float64),
                model_versions=versions,
            ))
        return proposals

    def _one(self, spec: LoadedSpecialist, text: str):
        """(encoding, (1, T, H) states, mentions) of one problem; the last one is kept, as the
        search asks C3 and C6 about the same problem once per slot."""
        key = spec.backbone.fingerprint + str(spec.backbone.max_tokens)
        if self._problem is None or self._problem[:2] != (key, text):
            enc = self._encode(spec.backbone, [text])[0]
            states = torch.from_numpy(enc.states.astype(np.float32))[None]
            self._problem = (key, text, (enc, states, mentions_of(text)))
        return self._problem[2]

    def operands(self, text: str, requests: Sequence[OperandRequest]) -> list[list[dict[Candidate, float]]]:
        """C3 for one problem and many (slot, op, prefix) requests in one padded pass; each
        position's distribution holds its ``operand_top`` most probable candidates (the search
        keeps at most ``top_k`` ≤ that many)."""
        spec = self.specialists["C3"]
        op_index = {op: k for k, op in enumerate(spec.maps["ops"])}
        enc, states, mask, mentions, arrays = self._prefix_inputs(spec, text, [r.prefix for r in requests])
        queries = [(r.slot, op_index.get(r.op, op_index[NONE_OP]), a) for r, a in zip(requests, arrays)]
        with torch.no_grad():
            return operand_distributions(spec.head, states, mask, enc.starts, enc.ends, mentions, queries,
                                         spec.maps["constants"], spec.temperatures["operand"], top=self.operand_top)

    def _prefix_inputs(self, spec: LoadedSpecialist, text: str, prefixes: Sequence[Prefix]):
        """One problem's encoding, (1, T, H) states, mask and mentions, with ``prefixes`` as
        :class:`~training.prefix.PrefixArrays` in ``spec``'s op and constant vocabulary (kept
        per problem: the search asks C6, C2 and C3 about the same partial programs)."""
        op_index = {op: k for k, op in enumerate(spec.maps["ops"])}
        enc, states, mentions = self._one(spec, text)
        mask = torch.ones(1, states.shape[1], dtype=torch.bool)
        if self._arrays_text != text:
            self._arrays, self._arrays_text = {}, text
        arrays = []
        for prefix in prefixes:
            key = (spec.specialist, prefix)
            if key not in self._arrays:
                self._arrays[key] = prefix_arrays(contract_prefix(prefix, op_index, spec.maps["constants"]), len(mentions))
            arrays.append(self._arrays[key])
        return enc, states, mask, mentions, arrays

    def stops(self, text: str, prefixes: Sequence[Prefix]) -> list[float] | None:
        """C6's stop head for one problem and many partial programs in one padded pass (None when
        the loaded C6 has no stop head)."""
        spec = self.specialists["C6"]
        if getattr(spec.head, "stop", None) is None:
            return None
        if not prefixes:
            return []
        enc, states, mask, mentions, arrays = self._prefix_inputs(spec, text, prefixes)
        with torch.no_grad():
            return stop_probs(spec.head, states, mask, enc.starts, enc.ends, mentions, arrays,
                              spec.temperatures["stop"]).tolist()

    def next_ops(self, text: str, prefixes: Sequence[Prefix]) -> list[dict[str, float]] | None:
        """C2's next-op head for one problem and many partial programs in one padded pass (None
        when the loaded C2 has no such head)."""
        spec = self.specialists["C2"]
        if getattr(spec.head, "next_op", None) is None:
            return None
        if not prefixes:
            return []
        enc, states, mask, mentions, arrays = self._prefix_inputs(spec, text, prefixes)
        with torch.no_grad():
            probs = next_op_probs(spec.head, states, mask, enc.starts, enc.ends, mentions, arrays,
                                  spec.temperatures["next_op"])
        return [dict(zip(spec.maps["ops"], row.tolist())) for row in probs]
