"""DB shell of teacher extraction: choose the work, run the teacher, store each problem atomically.

Per (problem, teacher config hash) there is at most one trace. A problem whose trace succeeded
is skipped on re-runs; a failed one is retried and replaced. Each problem's trace, signals,
CoT spans, regions and its C1 machine label are written in one transaction, so a crash never
leaves half a result behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    CotSpan,
    Label,
    LabelSource,
    LabelTask,
    Problem,
    Region,
    RegionSource,
    TeacherConfig,
    Trace,
    TraceSignals,
    TraceStatus,
)
from app.execution.equivalence import equivalent
from app.teacher.answer import teacher_final_answer
from app.teacher.loading import Teacher
from app.teacher.run import ExtractionConfig, TeacherReading, cot_span_chars, generate_cots, read_cots, read_generated

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"extracted": self.extracted, "skipped": self.skipped, "failed": self.failed, "failures": self.failures}


def get_or_create_teacher_config(session: Session, teacher: Teacher, config: ExtractionConfig) -> TeacherConfig:
    config_hash = config.config_hash(teacher.name, teacher.revision, teacher.dtype)
    session.execute(
        insert(TeacherConfig)
        .values(
            model_name=teacher.name,
            revision=teacher.revision,
            dtype=teacher.dtype,
            mode=config.mode,
            prompt=config.prompt,
            max_new_tokens=config.max_new_tokens,
            capture=config.capture_settings(),
            config_hash=config_hash,
        )
        .on_conflict_do_nothing(index_elements=["config_hash"])
    )
    row = session.scalar(select(TeacherConfig).where(TeacherConfig.config_hash == config_hash))
    assert row is not None
    return row


def pending_problem_ids(session: Session, problem_ids: Sequence[int], teacher_config_id: int) -> list[int]:
    """Those of ``problem_ids`` without a succeeded trace for this teacher config (order kept)."""
    done = set(
        session.scalars(
            select(Trace.problem_id).where(
                Trace.teacher_config_id == teacher_config_id,
                Trace.status == TraceStatus.SUCCEEDED,
                Trace.problem_id.in_(problem_ids),
            )
        )
    )
    return [pid for pid in problem_ids if pid not in done]


def extract_problems(
    sessions: sessionmaker[Session],
    problem_ids: Sequence[int],
    teacher: Teacher,
    config: ExtractionConfig,
    progress: Callable[[int], None] | None = None,
) -> ExtractReport:
    """Extract every problem in ``problem_ids`` not done yet; failures are recorded, the batch goes on."""
    report = ExtractReport()
    with sessions.begin() as session:
        teacher_config_id = get_or_create_teacher_config(session, teacher, config).id
        todo = pending_problem_ids(session, list(problem_ids), teacher_config_id)
    report.skipped = len(problem_ids) - len(todo)
    if progress and report.skipped:
        progress(report.skipped)

    for start in range(0, len(todo), config.batch_size):
        chunk = todo[start : start + config.batch_size]
        with sessions() as session:
            rows = {p.id: p for p in session.scalars(select(Problem).where(Problem.id.in_(chunk)))}
            problems = [rows[pid] for pid in chunk]
            session.expunge_all()
        outcomes = run_teacher(teacher, problems, config)
        for problem, outcome in zip(problems, outcomes, strict=True):
            with sessions.begin() as session:
                if isinstance(outcome, Exception):
                    error = f"{type(outcome).__name__}: {outcome}"
                    store_failure(session, problem.id, teacher_config_id, error)
                    report.failed += 1
                    report.failures.append(f"problem {problem.id} ({problem.external_id}): {error}")
                    log.warning("problem %d (%s) failed: %s", problem.id, problem.external_id, error)
                else:
                    store_reading(session, problem, teacher_config_id, outcome)
                    report.extracted += 1
            if progress:
                progress(1)
    return report


def run_teacher(teacher: Teacher, problems: Sequence[Problem], config: ExtractionConfig) -> list[TeacherReading | Exception]:
    texts = [p.text for p in problems]
    if config.mode == "forced":
        cots: list[str] = []
        errors: dict[int, Exception] = {}
        for index, problem in enumerate(problems):
            if not problem.gold_solution:
                errors[index] = ValueError("forced mode needs a reference solution; this problem has none")
            cots.append(problem.gold_solution or "")
        readings = read_cots(teacher, texts, cots, config)
        return [errors.get(i, reading) for i, reading in enumerate(readings)]
    generated = generate_cots(
        teacher, texts, prompt=config.prompt, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size
    )
    return read_generated(teacher, texts, generated, config)


def _replace_trace(session: Session, problem_id: int, teacher_config_id: int) -> None:
    session.execute(delete(Trace).where(Trace.problem_id == problem_id, Trace.teacher_config_id == teacher_config_id))


def store_failure(session: Session, problem_id: int, teacher_config_id: int, error: str) -> None:
    _replace_trace(session, problem_id, teacher_config_id)
    session.add(Trace(problem_id=problem_id, teacher_config_id=teacher_config_id, status=TraceStatus.FAILED, error=error))


def store_reading(session: Session, problem: Problem, teacher_config_id: int, reading: TeacherReading) -> Trace:
    """Write trace, signals, spans, regions and the C1 machine label of one problem."""
    _replace_trace(session, problem.id, teacher_config_id)
    encoded, signals = reading.encoded, reading.signals
    answer = teacher_final_answer(reading.cot_text)
    trace = Trace(
        problem_id=problem.id,
        teacher_config_id=teacher_config_id,
        status=TraceStatus.SUCCEEDED,
        cot_text=reading.cot_text,
        cot_token_starts=encoded.cot_char_spans[:, 0].tolist(),
        cot_token_ends=encoded.cot_char_spans[:, 1].tolist(),
        problem_token_starts=encoded.problem_char_spans[:, 0].tolist(),
        problem_token_ends=encoded.problem_char_spans[:, 1].tolist(),
        prompt_token_count=encoded.prompt_token_count,
        problem_token_offset=encoded.problem_token_range[0],
        teacher_answer=answer,
        correct=answer is not None and equivalent(answer, problem.gold_answer),
        truncated=reading.truncated,
    )
    iaf = np.asarray(signals.iaf, dtype=np.float64)
    trace.signals = TraceSignals(
        jsd_raw=np.asarray(signals.jsd_raw, dtype=np.float64).tolist(),
        jsd_smoothed=np.asarray(signals.jsd_smoothed, dtype=np.float64).tolist(),
        boundaries=[int(b) for b in signals.boundaries],
        iaf=iaf.ravel().tolist(),
        iaf_shape=list(iaf.shape),
        input_fraction=np.asarray(signals.input_fraction, dtype=np.float64).tolist(),
    )
    for index, (token_start, token_end) in enumerate(signals.segments):
        char_start, char_end = cot_span_chars(encoded, token_start, token_end)
        trace.spans.append(
            CotSpan(
                index=index,
                token_start=int(token_start),
                token_end=int(token_end),
                char_start=char_start,
                char_end=char_end,
                text=reading.cot_text[char_start:char_end],
                mean_input_fraction=float(signals.segment_input_fraction[index]),
                implicit=bool(signals.implicit_segments[index]),
            )
        )
    session.add(trace)
    session.flush()
    label_regions = []
    for span, step_regions in zip(trace.spans, reading.regions, strict=True):
        for region in step_regions:
            text = problem.text[region.start_char : region.end_char]
            session.add(
                Region(
                    problem_id=problem.id,
                    trace_id=trace.id,
                    cot_span_id=span.id,
                    char_start=region.start_char,
                    char_end=region.end_char,
                    text=text,
                    source=RegionSource.CLAUSE if region.source == "clause" else RegionSource.IAF,
                    score=float(region.score),
                )
            )
            label_regions.append(
                {"start": region.start_char, "end": region.end_char, "text": text,
                 "score": float(region.score), "step": span.index}
            )
    session.add(
        Label(
            problem_id=problem.id,
            task=LabelTask.C1,
            payload={"regions": label_regions},
            source=LabelSource.TEACHER,
            confidence=float(np.mean([r["score"] for r in label_regions])) if label_regions else 0.0,
            trace_id=trace.id,
        )
    )
    return trace
