"""Attention signals (design §2): pure functions, arrays and strings in, arrays and dataclasses out.

No database, no I/O (except loading the spaCy model once).  Units are explicit
everywhere: *token* indices are positions in the teacher tokenizer's sequence,
*char* offsets index a string; they are converted only through a fast tokenizer's
offset mapping.  Numpy or torch arrays are accepted; numpy is returned.

Top level (teacher extraction calls these two)::

    compute_trace_signals(rows, problem_token_range, cot_token_range,
                          config=SignalConfig(), input_fraction_per_head=None) -> TraceSignals
        rows: (n_cot, T) aggregated CoT attention over absolute positions 0…T-1;
        ranges: absolute half-open token ranges; input_fraction_per_head: (H, n_cot).
        TraceSignals: jsd_raw, jsd_smoothed (n_cot-1,), boundaries, segments (CoT-relative
        token ranges), iaf (n_segments, n_problem), segment_input_mass, input_fraction (n_cot,),
        segment_input_fraction, implicit_runs, implicit_segments (n_segments,) bool.

    problem_regions(problem_text, problem_token_char_spans, iaf_row, config=SignalConfig())
        -> list[Region(start_char, end_char, score, source, seeds)]
        problem_token_char_spans: (n_problem, 2) char spans relative to problem_text
        (ProblemTokens.char_spans); iaf_row: (n_problem,), one row of TraceSignals.iaf.
    problem_regions_per_segment(problem_text, problem_token_char_spans, iaf_matrix, config)
        -> list[list[Region]]

Building blocks, by module:

* ``jsd``: ``aggregate_heads(layer_attention (H,n,T), JSDConfig) -> (n,T)``,
  ``aggregate_attention((L,H,n,T) | [ (H,n,T) ], JSDConfig) -> (n,T)``,
  ``jsd(p, q, epsilon) -> (...)``, ``jsd_trace(rows, cot_token_range, problem_token_range, JSDConfig)
  -> (n_cot-1,)``, ``smooth_trace(trace, JSDConfig)``, ``detect_peaks(smoothed, JSDConfig) -> trace
  indices``, ``jsd_boundaries(smoothed, JSDConfig) -> token indices``,
  ``segments_from_boundaries(boundaries, n_tokens) -> list[(start, end)]``.
* ``iaf``: ``iaf_matrix(rows, problem_token_range, segments) -> (n_seg, n_problem)``,
  ``segment_input_mass(rows, problem_token_range, segments)``, ``problem_segment_sums`` /
  ``iaf_from_sums`` / ``mass_from_sums`` (both from one pass), ``input_fraction(rows, range) -> (n,)``,
  ``input_fraction_per_head(layer_attention (H,n,T), range) -> (H,n)``,
  ``implicit_steps(fraction (n,)|(H,n), IAFConfig) -> list[(start, end)]``,
  ``implicit_segment_mask(segments, runs, n_tokens, min_coverage)``, ``segment_means(values, segments)``,
  ``high_iaf_tokens(iaf_row, problem_text, problem_token_char_spans, IAFConfig) -> token indices``.
* ``alignment``: ``token_char_spans(tokenizer, text) -> offsets (n,2)``,
  ``locate_problem(prompt, problem_text) -> (start_char, end_char)``,
  ``problem_tokens(prompt_offsets, problem_char_range) -> ProblemTokens(token_range, char_spans)``,
  ``char_spans_to_token_spans(char_spans, offsets) -> (k,2)``,
  ``token_spans_to_char_spans(token_spans, offsets, text=None) -> (k,2)``, ``trim_span``,
  ``render_spans(text, char_spans, labels=None) -> str``, ``render_token_spans(text, token_spans, offsets)``.
* ``units``: ``unbreakable_spans(text) -> (k,2)`` char spans of numbers, ``<<…>>`` calculator
  annotations and LaTeX math (display math cut at its ``\\\\`` line breaks); ``inside_units(text)``;
  ``word_start_tokens`` (alignment) never lets a CoT segment start inside one, nor at a token that
  starts before the previous token ends (byte pieces of ×, →, €).
* ``clauses``: ``load_spacy(model_names)``, ``parse_problem(text, ClauseConfig)``, ``latex_spans(text)``,
  ``clause_spans(text, ClauseConfig)``, ``expand_to_clauses(text, char_spans, ClauseConfig) -> list[(s, e)]``,
  ``merge_spans``, ``problem_regions``, ``problem_regions_per_segment``.
* ``operands``: ``match_step_operands(step_text, problem_text, prior_results, OperandConfig, exclude=())``,
  ``match_operands(operands, problem_text, prior_results, OperandConfig)``, ``match_operand(...)``
  ``-> OperandMatch(value, source 'problem'|'prior'|'constant', problem_mentions, prior_steps, mention)``,
  ``step_dependencies(matches)``, ``candidate_values``.  Numbers come from ``app.execution.numbers``.
* ``iotags``: ``io_tags_from_regions(char_regions, offsets) -> (n_tokens,) int8`` (1 = I),
  ``regions_from_io_tags(tags, offsets, text=None) -> (k,2)``.
* ``config``: ``SignalConfig(jsd=JSDConfig, iaf=IAFConfig, clauses=ClauseConfig, operands=OperandConfig)``.
"""

from __future__ import annotations

from app.signals.alignment import (
    ProblemTokens,
    char_spans_to_token_spans,
    locate_problem,
    problem_tokens,
    render_spans,
    render_token_spans,
    token_char_spans,
    token_spans_to_char_spans,
    trim_span,
    word_start_tokens,
)
from app.signals.clauses import (
    Region,
    clause_spans,
    expand_to_clauses,
    latex_spans,
    load_spacy,
    merge_spans,
    parse_problem,
    problem_regions,
    problem_regions_per_segment,
)
from app.signals.config import ClauseConfig, IAFConfig, JSDConfig, OperandConfig, SignalConfig
from app.signals.iaf import (
    high_iaf_tokens,
    iaf_from_sums,
    iaf_matrix,
    implicit_segment_mask,
    implicit_steps,
    input_fraction,
    input_fraction_per_head,
    mass_from_sums,
    problem_segment_sums,
    segment_input_mass,
    segment_means,
)
from app.signals.iotags import TAG_I, TAG_O, io_tags_from_regions, regions_from_io_tags
from app.signals.jsd import (
    aggregate_attention,
    aggregate_heads,
    detect_peaks,
    jsd,
    jsd_boundaries,
    jsd_trace,
    segments_from_boundaries,
    smooth_trace,
    snap_boundaries,
)
from app.signals.operands import (
    OperandMatch,
    candidate_values,
    match_operand,
    match_operands,
    match_step_operands,
    step_dependencies,
)
from app.signals.trace import TraceSignals, compute_trace_signals

__all__ = [
    "ClauseConfig",
    "IAFConfig",
    "JSDConfig",
    "OperandConfig",
    "OperandMatch",
    "ProblemTokens",
    "Region",
    "SignalConfig",
    "TAG_I",
    "TAG_O",
    "TraceSignals",
    "aggregate_attention",
    "aggregate_heads",
    "candidate_values",
    "char_spans_to_token_spans",
    "clause_spans",
    "compute_trace_signals",
    "detect_peaks",
    "expand_to_clauses",
    "high_iaf_tokens",
    "iaf_from_sums",
    "iaf_matrix",
    "implicit_segment_mask",
    "implicit_steps",
    "input_fraction",
    "input_fraction_per_head",
    "io_tags_from_regions",
    "jsd",
    "jsd_boundaries",
    "jsd_trace",
    "latex_spans",
    "load_spacy",
    "locate_problem",
    "match_operand",
    "match_operands",
    "mass_from_sums",
    "match_step_operands",
    "merge_spans",
    "parse_problem",
    "problem_regions",
    "problem_regions_per_segment",
    "problem_segment_sums",
    "problem_tokens",
    "regions_from_io_tags",
    "render_spans",
    "render_token_spans",
    "segment_input_mass",
    "segment_means",
    "segments_from_boundaries",
    "smooth_trace",
    "snap_boundaries",
    "step_dependencies",
    "token_char_spans",
    "token_spans_to_char_spans",
    "trim_span",
    "word_start_tokens",
]
