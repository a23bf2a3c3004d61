"""Teacher extraction on a tiny local Qwen2 teacher: forced + generate modes, streamed capture
equals the full output_attentions pass, persistence is exact, idempotent and failure-tolerant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from app.db.models import CotSpan, Dataset, Label, Problem, Region, Split, Trace, TraceSignals, TraceStatus
from app.db.session import session_factory
from app.ingest import ingest_file
from app.signals.alignment import word_start_tokens
from app.signals.config import JSDConfig, SignalConfig
from app.signals.trace import compute_trace_signals
from app.teacher.capture import AttentionCaptureError, SampleLayout, full_attention_capture, streamed_capture
from app.teacher.loading import load_teacher
from app.teacher.persist import extract_problems
from app.teacher.prompting import encode_problem_and_cot
from app.teacher.run import ExtractionConfig, capture_batch
from app.teacher.tiny import build_tiny_teacher
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"
CONFIG = ExtractionConfig(mode="forced", batch_size=3, signals=SignalConfig(jsd=JSDConfig(layers=(-1, -2))))


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    texts = [r["question"] + "\n" + r["answer"] for r in records]
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher"), texts, num_layers=3, hidden_size=64, num_heads=4)


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir: Path):
    """Loaded with eager attention so that output_attentions=True gives the reference weights;
    extraction itself switches to the recompute capture (SDPA + recomputed CoT rows) and back."""
    return load_teacher(str(tiny_teacher_dir), dtype="float32", device="cpu", attn_implementation="eager")


def _problem_ids(session, n: int) -> list[int]:
    return list(session.scalars(select(Problem.id).order_by(Problem.id).limit(n)))


def test_forced_extraction_persists_exact_spans_and_regions(db_session, teacher) -> None:
    ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    ids = _problem_ids(db_session, 6)
    report = extract_problems(session_factory(), ids, teacher, CONFIG)
    assert (report.extracted, report.skipped, report.failed) == (6, 0, 0)

    traces = db_session.scalars(select(Trace).order_by(Trace.problem_id)).all()
    assert [t.status for t in traces] == [TraceStatus.SUCCEEDED] * 6
    for trace in traces:
        problem = trace.problem
        assert trace.cot_text == problem.gold_solution
        assert trace.truncated is False
        # Token offsets tile the CoT text exactly (byte-level BPE is lossless).
        pieces = [trace.cot_text[s:e] for s, e in zip(trace.cot_token_starts, trace.cot_token_ends)]
        assert "".join(pieces) == trace.cot_text
        spans = trace.spans
        assert spans[0].token_start == 0 and spans[-1].token_end == len(trace.cot_token_starts)
        for before, after in zip(spans, spans[1:]):
            assert before.token_end == after.token_start
        for span in spans:
            assert span.text == trace.cot_text[span.char_start : span.char_end]
            # segments start at word starts: never "Bett|y"
            assert span.char_start == 0 or not (
                trace.cot_text[span.char_start - 1].isalnum() and trace.cot_text[span.char_start].isalnum()
            )
            tokens = "".join(pieces[span.token_start : span.token_end])
            assert span.text == tokens
        # Problem-token offsets point into the problem text, never into the chat markup.
        problem_pieces = [problem.text[s:e] for s, e in zip(trace.problem_token_starts, trace.problem_token_ends)]
        assert "".join(problem_pieces) == problem.text
        signals = trace.signals
        assert len(signals.jsd_raw) == len(trace.cot_token_starts) - 1
        n_spans, n_problem = signals.iaf_shape
        assert (n_spans, n_problem) == (len(spans), len(trace.problem_token_starts))
        row_sums = np.asarray(signals.iaf).reshape(n_spans, n_problem).sum(axis=1)
        assert np.allclose(row_sums, 1.0, atol=1e-6)
        assert trace.teacher_answer is not None and trace.correct is True  # the reference solution's #### answer

    regions = db_session.scalars(select(Region)).all()
    assert regions, "clause expansion produced no regions"
    for region in regions:
        text = db_session.get(Problem, region.problem_id).text
        assert 0 <= region.char_start < region.char_end <= len(text)
        assert region.text == text[region.char_start : region.char_end]
        if region.source == "clause":  # whole words: no region starts or ends inside a word
            assert region.char_start == 0 or not (text[region.char_start - 1].isalnum() and text[region.char_start].isalnum())
            assert region.char_end == len(text) or not (text[region.char_end - 1].isalnum() and text[region.char_end].isalnum())
    labels = db_session.scalars(select(Label)).all()
    assert len(labels) == 6 and {label.source for label in labels} == {"teacher"}


def test_streamed_capture_equals_full_output_attentions(db_session, teacher) -> None:
    ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    problems = db_session.scalars(select(Problem).order_by(Problem.id).limit(3)).all()
    encoded = [encode_problem_and_cot(teacher.tokenizer, p.text, p.gold_solution) for p in problems]
    streamed = capture_batch(teacher, encoded, CONFIG)  # batched, right-padded, hooks
    extract_problems(session_factory(), [p.id for p in problems], teacher, CONFIG)
    for problem, enc, captured in zip(problems, encoded, streamed):
        layout = SampleLayout(len(enc.input_ids), enc.problem_token_range, enc.cot_token_range)
        with torch.no_grad():
            out = teacher.model(torch.tensor([enc.input_ids]), output_attentions=True)
        full = full_attention_capture(out.attentions, [layout], CONFIG.signals.jsd)[0]
        assert np.abs(captured.rows - full.rows).max() < 1e-5
        assert np.abs(captured.head_input_fraction - full.head_input_fraction).max() < 1e-5
        reference = compute_trace_signals(
            full.rows, enc.problem_token_range, enc.cot_token_range, CONFIG.signals, full.head_input_fraction,
            boundary_allowed=word_start_tokens(enc.cot_char_spans, problem.gold_solution),
        )
        stored = db_session.scalar(
            select(TraceSignals).join(Trace).where(Trace.problem_id == problem.id)
        )
        assert np.abs(np.asarray(stored.jsd_raw) - reference.jsd_raw).max() < 1e-5
        assert np.abs(np.asarray(stored.jsd_smoothed) - reference.jsd_smoothed).max() < 1e-5
        assert stored.boundaries == reference.boundaries.tolist()
        assert np.abs(np.asarray(stored.iaf) - reference.iaf.ravel()).max() < 1e-5


def test_rerun_is_idempotent_and_a_failing_problem_does_not_stop_the_batch(db_session, teacher) -> None:
    ingest_file(db_session, GSM8K, "gsm8k")
    dataset = db_session.scalar(select(Dataset))
    broken = Problem(dataset_id=dataset.id, text="What is 1 + 1?", gold_answer="2", gold_solution="2",
                     split=Split.TRAIN, content_hash="x" * 64, external_id="broken")
    db_session.add(broken)
    db_session.commit()
    ids = [*_problem_ids(db_session, 2), broken.id, *_problem_ids(db_session, 4)[2:]]
    first = extract_problems(session_factory(), ids, teacher, CONFIG)
    assert (first.extracted, first.failed) == (4, 1)
    assert "problem" in first.failures[0] and "broken" in first.failures[0]
    failed = db_session.scalar(select(Trace).where(Trace.problem_id == broken.id))
    assert failed.status == TraceStatus.FAILED
    assert failed.error == "ValueError: the CoT has fewer than 2 tokens: no attention trace to segment"

    counts = lambda: tuple(  # noqa: E731
        db_session.scalar(select(func.count()).select_from(model)) for model in (Trace, CotSpan, Region, Label)
    )
    before = counts()
    again = extract_problems(session_factory(), ids, teacher, CONFIG)
    assert (again.extracted, again.skipped, again.failed) == (0, 4, 1)  # the failed one is retried
    assert counts() == before


def test_generate_mode_records_truncation(db_session, teacher) -> None:
    ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    config = ExtractionConfig(mode="generate", max_new_tokens=12, batch_size=2, signals=CONFIG.signals)
    report = extract_problems(session_factory(), _problem_ids(db_session, 2), teacher, config)
    assert report.extracted == 2, report.failures
    for trace in db_session.scalars(select(Trace)).all():
        assert trace.truncated is True  # random weights never emit EOS within 12 tokens
        assert len(trace.cot_token_starts) >= 2 and len(trace.signals.jsd_raw) == len(trace.cot_token_starts) - 1
        assert trace.spans and trace.spans[-1].token_end == len(trace.cot_token_starts)
        assert trace.correct is False


def test_sdpa_model_eager_capture_fails_loudly_recompute_capture_works(tiny_teacher_dir: Path, teacher) -> None:
    sdpa = load_teacher(str(tiny_teacher_dir), dtype="float32", device="cpu", attn_implementation="sdpa")
    enc = encode_problem_and_cot(sdpa.tokenizer, "Tom has 3 apples.", "3 + 2 = 5 apples.")
    layout = SampleLayout(len(enc.input_ids), enc.problem_token_range, enc.cot_token_range)
    ids = torch.tensor([enc.input_ids])
    with pytest.raises(AttentionCaptureError, match="returned no attention weights.*'sdpa'"):
        with torch.no_grad(), streamed_capture(sdpa.model, [layout], JSDConfig(), method="eager"):
            sdpa.model(ids)
    with torch.no_grad(), streamed_capture(sdpa.model, [layout], JSDConfig(), method="recompute", block_rows=3) as cap:
        sdpa.model(ids)
    recomputed = cap.results()[0]
    assert sdpa.model.config._attn_implementation == "sdpa"  # restored after the capture
    with torch.no_grad(), streamed_capture(teacher.model, [layout], JSDConfig(), method="eager") as cap:
        teacher.model(ids)
    eager = cap.results()[0]
    assert np.abs(recomputed.rows - eager.rows).max() < 1e-5
    assert np.abs(recomputed.head_input_fraction - eager.head_input_fraction).max() < 1e-5


def test_cli_extract_and_show_trace(db_session, tiny_teacher_dir: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(GSM8K), "--dataset", "gsm8k", "--json"])
    assert ingested.exit_code == 0, ingested.output
    args = ["extract", "--dataset", "gsm8k", "--limit", "3", "--teacher", str(tiny_teacher_dir),
            "--mode", "forced", "--layers", "-1", "--device", "cpu", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1]) == {"extracted": 3, "skipped": 0, "failed": 0, "failures": []}
    second = runner.invoke(app, args)
    assert json.loads(second.stdout.strip().splitlines()[-1])["skipped"] == 3

    trace = db_session.scalar(select(Trace).order_by(Trace.id))
    shown = runner.invoke(app, ["show", "trace", str(trace.id)])
    assert shown.exit_code == 0, shown.output
    assert "CoT segments (JSD boundaries)" in shown.stdout and "problem regions" in shown.stdout
    first_span = trace.spans[0]
    assert f"[0] {first_span.char_start}:{first_span.char_end} {first_span.text!r}" in shown.stdout.replace("\n", "")
    missing = runner.invoke(app, ["show", "trace", "999999"])
    assert missing.exit_code == 1 and "no trace 999999" in missing.output
