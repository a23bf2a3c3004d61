"""Run a teacher over a batch of problems (no DB): write or read the CoT, capture, compute signals.

Modes (design §8):
* ``forced``   — an existing CoT (e.g. the dataset's reference solution) is read in one pass;
* ``generate`` — the teacher writes the CoT greedily (``max_new_tokens``, ``truncated`` when the
  budget ran out), then one teacher-forced pass over prompt + CoT captures the attention (the
  causal attention of that pass is the generation-phase attention).

A forced CoT is tokenized on its own (tokenizer offsets give each token's char span); a generated
CoT is never re-tokenized: the capture pass runs over the prompt ids + the generated ids, and their
char spans come from incremental decoding. Generation stops at the model's own end tokens
(``generation_config.eos_token_id``, a list for chat models), not only ``tokenizer.eos_token_id``.

Captured rows follow the capture's row convention: row t = the query at CoT token t.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import get_args
from typing import Any, Literal

import numpy as np
import torch

from app.signals.trace import TraceSignals, compute_trace_signals
from app.signals.config import JSDConfig, SignalConfig
from app.signals.alignment import word_start_tokens
from app.signals.clauses import Region, problem_regions_per_segment
from app.teacher.capture import (
    CaptureMethod,
    CapturedAttention,
    NonFiniteAttentionError,
    SampleLayout,
    streamed_capture,
)
from app.teacher.loading import Teacher
from app.teacher.prompting import (
    DEFAULT_PROMPT,
    EncodedInput,
    encode_problem_and_cot,
    encode_problem_and_generated,
    render_prompt,
)

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
        """From a job's / the CLI's parameters.

        ``mode``, ``max_new_tokens``, ``batch_size``, ``capture_method`` (recompute / eager),
        ``signals`` (a ``SignalConfig`` as a dict or JSON text: any subset of its fields, e.g. the
        contents of ``mycelium extract --signals FILE.json``), then the JSD overrides ``layers``
        ("-1,-2"), ``heads`` ("0,3"), ``aggregation`` and ``context`` (each applied when present and
        not None). Unknown signal fields or values raise ``ValueError``.
        """
        signals = params.get("signals") or {}
        if isinstance(signals, str):
            signals = json.loads(signals)
        base = SignalConfig.model_validate(signals)
        jsd = base.jsd.model_dump()
        for key in ("layers", "heads"):
            if params.get(key) not in (None, ""):
                jsd[key] = tuple(int(x) for x in str(params[key]).split(","))
        for key in ("aggregation", "context"):
            if params.get(key) not in (None, ""):
                jsd[key] = params[key]
        capture_method = params.get("capture_method") or "recompute"
        if capture_method not in get_args(CaptureMethod):
            raise ValueError(f"unknown capture method {capture_method!r}; expected one of {get_args(CaptureMethod)}")
        return cls(
            mode=params.get("mode", "forced"),
            max_new_tokens=int(params.get("max_new_tokens", 1024)),
            batch_size=int(params.get("batch_size", 4)),
            signals=base.model_copy(update={"jsd": JSDConfig.model_validate(jsd)}),
            capture_method=capture_method,
        )

    def capture_settings(self) -> dict:
        return {
            "signals": self.signals.model_dump(mode="json"),
            "batch_size": self.batch_size,
            "capture_method": self.capture_method,
            "block_rows": self.block_rows,
        }

    def config_hash(self, teacher_name: str, revision: str | None, dtype: str) -> str:
        """Identity of a teacher configuration: same hash ⇒ same traces.

        The capture method is part of it: recompute and eager agree to ~1e-7 in float32 but not in
        bfloat16 (eager rounds q·kᵀ and the weights to bf16), where boundaries can differ. Batch size
        and ``block_rows`` are excluded: they change speed and memory only."""
        identity = {
            "capture_method": self.capture_method,
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


@dataclass(frozen=True)
class GeneratedCoT:
    """A greedy CoT: its text, the generated token ids (end token excluded) and whether the budget
    ran out before an end token."""

    text: str
    token_ids: list[int]
    truncated: bool


def end_token_ids(teacher: Teacher) -> list[int]:
    """The ids that end generation: ``generation_config.eos_token_id`` (int or list; chat models
    list several, e.g. <|im_end|> and <|endoftext|>), else the tokenizer's EOS."""
    configured = getattr(getattr(teacher.model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = teacher.tokenizer.eos_token_id
    if configured is None:
        return []
    return [int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured])]


def generate_cots(
    teacher: Teacher, problems: Sequence[str], *, prompt: str, max_new_tokens: int, batch_size: int
) -> list[GeneratedCoT]:
    """Greedy CoTs for ``problems``; generation stops at the model's own end tokens (its
    ``generation_config``), ``truncated`` = no end token within ``max_new_tokens``."""
    tokenizer = teacher.tokenizer
    ends = end_token_ids(teacher)
    results: list[GeneratedCoT] = []
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
                    eos_token_id=ends or None,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :].cpu()
            is_end = torch.isin(new_tokens, torch.tensor(ends, dtype=new_tokens.dtype))  # (batch, new)
            ended = is_end.any(dim=1)
            first_end = torch.where(ended, is_end.int().argmax(dim=1), torch.full_like(ended, new_tokens.shape[1], dtype=torch.long))
            for row, cut, done in zip(new_tokens.tolist(), first_end.tolist(), ended.tolist(), strict=True):
                kept = row[:cut]
                text = tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                results.append(GeneratedCoT(text=text, token_ids=kept, truncated=not done))
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
    """Forced mode: tokenize each CoT text, then :func:`read_encoded`."""
    encoded: list[EncodedInput | Exception] = []
    for problem, cot in zip(problems, cots, strict=True):
        try:
            encoded.append(encode_problem_and_cot(teacher.tokenizer, problem, cot, config.prompt))
        except Exception as exc:  # noqa: BLE001 — recorded per problem
            encoded.append(exc)
    return read_encoded(teacher, problems, cots, encoded, config, truncated)


def read_generated(
    teacher: Teacher, problems: Sequence[str], generated: Sequence[GeneratedCoT], config: ExtractionConfig
) -> list[TeacherReading | Exception]:
    """Generate mode: capture over prompt ids + the generated ids themselves (never re-tokenized)."""
    encoded: list[EncodedInput | Exception] = []
    for problem, cot in zip(problems, generated, strict=True):
        try:
            encoded.append(encode_problem_and_generated(teacher.tokenizer, problem, cot.token_ids, config.prompt)[0])
        except Exception as exc:  # noqa: BLE001 — recorded per problem
            encoded.append(exc)
    return read_encoded(
        teacher, problems, [g.text for g in generated], encoded, config, [g.truncated for g in generated]
    )


def read_encoded(
    teacher: Teacher,
    problems: Sequence[str],
    cots: Sequence[str],
    encoded: Sequence[EncodedInput | Exception],
    config: ExtractionConfig,
    truncated: Sequence[bool] | None = None,
) -> list[TeacherReading | Exception]:
    """One teacher-forced pass per batch with streamed capture; per-problem errors are returned, not raised."""
    truncated = truncated or [False] * len(problems)
    results: list[TeacherReading | Exception] = [e if isinstance(e, Exception) else RuntimeError("not processed") for e in encoded]
    ready = [i for i, e in enumerate(encoded) if not isinstance(e, Exception)]
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


@contextmanager
def attention_implementation(model: torch.nn.Module, implementation: str) -> Iterator[None]:
    """Run the block with ``model`` set to ``implementation`` attention, then restore the previous one."""
    previous = model.config._attn_implementation
    if previous == implementation:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def capture_batch(teacher: Teacher, batch: Sequence[EncodedInput], config: ExtractionConfig) -> list[CapturedAttention]:
    """Right-padded forward pass (causal attention: padding never touches real tokens).

    The ``eager`` capture method runs this pass with eager attention (switched for the pass and
    restored), so a teacher loaded with SDPA can still be captured the eager way."""
    length = max(len(e.input_ids) for e in batch)
    pad = teacher.tokenizer.pad_token_id
    ids = torch.full((len(batch), length), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for row, enc in enumerate(batch):
        ids[row, : len(enc.input_ids)] = torch.tensor(enc.input_ids)
        mask[row, : len(enc.input_ids)] = 1
    layouts = [SampleLayout(len(e.input_ids), e.problem_token_range, e.cot_token_range) for e in batch]
    implementation = "eager" if config.capture_method == "eager" else teacher.model.config._attn_implementation
    with torch.no_grad(), attention_implementation(teacher.model, implementation), streamed_capture(
        teacher.model, layouts, config.signals.jsd, method=config.capture_method, block_rows=config.block_rows
    ) as capture:
        teacher.model(input_ids=ids.to(teacher.device), attention_mask=mask.to(teacher.device), use_cache=False)
    return capture.results()


def build_reading(
    problem: str, cot: str, truncated: bool, encoded: EncodedInput, captured: CapturedAttention, config: ExtractionConfig
) -> TeacherReading:
    """Signals and regions of one captured problem; non-finite attention raises, naming the problem and layer."""
    if captured.nonfinite is not None:
        layer, row = captured.nonfinite
        raise NonFiniteAttentionError(
            f"non-finite attention (NaN/inf) in layer {layer} from CoT token {row} on, problem {problem[:60]!r}"
        )
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
