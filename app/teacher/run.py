"""Run a teacher over a batch of problems (no DB): write or read the CoT, capture, compute signals.

Modes (design §8):
* ``forced``   — an existing CoT (e.g. the dataset's reference solution) is read in one pass;
* ``generate`` — the teacher writes the CoT greedily (``max_new_tokens``, ``truncated`` when the
  budget ran out), then one teacher-forced pass over prompt + CoT captures the attention (the
  causal attention of that pass is the generation-phase attention).

In both modes the CoT text is re-tokenized on its own for the capture pass, so every CoT token
has an exact char span in the CoT text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from app.signals.trace import TraceSignals, compute_trace_signals
from app.signals.config import JSDConfig, SignalConfig
from app.signals.alignment import word_start_tokens
from app.signals.clauses import Region, problem_regions_per_segment
from app.teacher.capture import CaptureMethod, CapturedAttention, SampleLayout, streamed_capture
from app.teacher.loading import Teacher
from app.teacher.prompting import DEFAULT_PROMPT, EncodedInput, encode_problem_and_cot, render_prompt

Mode = Literal["forced", "generate"]


@dataclass(frozen=True)
class ExtractionConfig:
    mode: Mode = "forced"
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 1024
    batch_size: int = 4
    signals: SignalConfig = field(default_factory=SignalConfig)
    capture_method: CaptureMethod = "recompute"
    block_rows: int = 128  # CoT rows per recomputed attention block (recompute capture)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExtractionConfig:
        """From a job's / the CLI's parameters: mode, max_new_tokens, batch_size, layers ("-1,-2")."""
        layers = tuple(int(x) for x in str(params.get("layers", "-1")).split(","))
        return cls(
            mode=params.get("mode", "forced"),
            max_new_tokens=int(params.get("max_new_tokens", 1024)),
            batch_size=int(params.get("batch_size", 4)),
            signals=SignalConfig(jsd=JSDConfig(layers=layers)),
        )

    def capture_settings(self) -> dict:
        return {
            "signals": self.signals.model_dump(mode="json"),
            "batch_size": self.batch_size,
            "capture_method": self.capture_method,
            "block_rows": self.block_rows,
        }

    def config_hash(self, teacher_name: str, revision: str | None, dtype: str) -> str:
        """Identity of a teacher configuration: same hash ⇒ same traces (batch size and capture
        method excluded: they change speed and memory, not the signals)."""
        identity = {
            "model": teacher_name,
            "revision": revision,
            "dtype": dtype,
            "mode": self.mode,
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens if self.mode == "generate" else None,
            "signals": self.signals.model_dump(mode="json"),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass
class TeacherReading:
    """Everything one problem yields: CoT, token offsets, captured attention, signals, regions."""

    cot_text: str
    truncated: bool
    encoded: EncodedInput
    captured: CapturedAttention
    signals: TraceSignals
    regions: list[list[Region]]  # per CoT segment: clause-expanded problem regions


def generate_cots(
    teacher: Teacher, problems: Sequence[str], *, prompt: str, max_new_tokens: int, batch_size: int
) -> list[tuple[str, bool]]:
    """Greedy CoTs for ``problems``: (text, truncated) each; truncated = no EOS within the budget."""
    tokenizer = teacher.tokenizer
    results: list[tuple[str, bool]] = []
    original_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge
    try:
        for start in range(0, len(problems), batch_size):
            prompts = [render_prompt(tokenizer, p, prompt)[0] for p in problems[start : start + batch_size]]
            batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt").to(teacher.device)
            with torch.no_grad():
                output = teacher.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for row in new_tokens.tolist():
                ended = tokenizer.eos_token_id in row
                kept = row[: row.index(tokenizer.eos_token_id)] if ended else row
                results.append((tokenizer.decode(kept, skip_special_tokens=True), not ended))
    finally:
        tokenizer.padding_side = original_side
    return results


def read_cots(
    teacher: Teacher,
    problems: Sequence[str],
    cots: Sequence[str],
    config: ExtractionConfig,
    truncated: Sequence[bool] | None = None,
) -> list[TeacherReading | Exception]:
    """One teacher-forced pass per batch with streamed capture; per-problem errors are returned, not raised."""
    truncated = truncated or [False] * len(problems)
    results: list[TeacherReading | Exception] = [RuntimeError("not processed")] * len(problems)
    encoded: list[EncodedInput | None] = []
    for index, (problem, cot) in enumerate(zip(problems, cots, strict=True)):
        try:
            encoded.append(encode_problem_and_cot(teacher.tokenizer, problem, cot, config.prompt))
        except Exception as exc:  # noqa: BLE001 — recorded per problem
            results[index] = exc
            encoded.append(None)

    ready = [i for i, e in enumerate(encoded) if e is not None]
    for start in range(0, len(ready), config.batch_size):
        indices = ready[start : start + config.batch_size]
        batch = [encoded[i] for i in indices]
        try:
            captured = capture_batch(teacher, batch, config)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            for i in indices:
                results[i] = exc
            continue
        for i, enc, cap in zip(indices, batch, captured, strict=True):
            try:
                results[i] = build_reading(problems[i], cots[i], truncated[i], enc, cap, config)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
    return results


def capture_batch(teacher: Teacher, batch: Sequence[EncodedInput], config: ExtractionConfig) -> list[CapturedAttention]:
    """Right-padded forward pass (causal attention: padding never touches real tokens)."""
    length = max(len(e.input_ids) for e in batch)
    pad = teacher.tokenizer.pad_token_id
    ids = torch.full((len(batch), length), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for row, enc in enumerate(batch):
        ids[row, : len(enc.input_ids)] = torch.tensor(enc.input_ids)
        mask[row, : len(enc.input_ids)] = 1
    layouts = [SampleLayout(len(e.input_ids), e.problem_token_range, e.cot_token_range) for e in batch]
    with torch.no_grad(), streamed_capture(
        teacher.model, layouts, config.signals.jsd, method=config.capture_method, block_rows=config.block_rows
    ) as capture:
        teacher.model(input_ids=ids.to(teacher.device), attention_mask=mask.to(teacher.device), use_cache=False)
    return capture.results()


def build_reading(
    problem: str, cot: str, truncated: bool, encoded: EncodedInput, captured: CapturedAttention, config: ExtractionConfig
) -> TeacherReading:
    signals = compute_trace_signals(
        captured.rows,
        problem_token_range=encoded.problem_token_range,
        cot_token_range=encoded.cot_token_range,
        config=config.signals,
        input_fraction_per_head=captured.head_input_fraction,
        boundary_allowed=word_start_tokens(encoded.cot_char_spans, cot),
    )
    regions = problem_regions_per_segment(problem, encoded.problem_char_spans, signals.iaf, config.signals)
    return TeacherReading(
        cot_text=cot, truncated=truncated, encoded=encoded, captured=captured, signals=signals, regions=regions
    )


def cot_span_chars(encoded: EncodedInput, token_start: int, token_end: int) -> tuple[int, int]:
    """Char range in the CoT text of CoT tokens [token_start, token_end) (CoT-relative token indices)."""
    spans = encoded.cot_char_spans[token_start:token_end]
    return int(np.min(spans[:, 0])), int(np.max(spans[:, 1]))
