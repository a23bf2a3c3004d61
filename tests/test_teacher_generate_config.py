"""Teacher extraction fixes of issue 15: generated ids are captured as generated (4), the model's own
end tokens stop generation (4), the capture method is part of the config hash (5), signal settings
are settable from the CLI and jobs and recorded (6), non-finite attention fails loudly (8)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sqlalchemy import select

from app.db.models import TeacherConfig
from app.signals.config import JSDConfig, SignalConfig
from app.signals.trace import compute_trace_signals
from app.teacher.loading import load_teacher
from app.teacher.persist import run_teacher
from app.teacher.prompting import render_prompt
from app.teacher.run import ExtractionConfig
from app.teacher.tiny import build_tiny_teacher
from tests.conftest import FIXTURES

GSM8K = FIXTURES / "gsm8k_sample.jsonl"
RECORDS = [json.loads(line) for line in GSM8K.read_text().splitlines()]
PROBLEMS = [SimpleNamespace(text=r["question"], gold_solution=r["answer"]) for r in RECORDS[:2]]
SIGNALS = SignalConfig(jsd=JSDConfig(layers=(0, -1)))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [r["question"] + "\n" + r["answer"] for r in RECORDS]
    return build_tiny_teacher(tmp_path_factory.mktemp("teacher"), texts, num_layers=2, hidden_size=64, num_heads=4)


@pytest.fixture()
def teacher(teacher_dir: Path):
    """A fresh SDPA teacher per test (tests change its generation config or weights)."""
    return load_teacher(str(teacher_dir), dtype="float32", device="cpu")


def _greedy_ids(teacher, problem: str, n: int) -> list[int]:
    prompt = render_prompt(teacher.tokenizer, problem)[0]
    ids = teacher.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = teacher.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     pad_token_id=teacher.tokenizer.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


def test_generate_mode_captures_the_generated_ids_not_a_re_tokenization(teacher) -> None:
    config = ExtractionConfig(mode="generate", max_new_tokens=40, batch_size=2, signals=SIGNALS)
    readings = run_teacher(teacher, PROBLEMS, config)
    for problem, reading in zip(PROBLEMS, readings, strict=True):
        assert not isinstance(reading, Exception), reading
        enc = reading.encoded
        cot_ids = enc.input_ids[enc.cot_token_range[0] :]
        assert reading.truncated and cot_ids == _greedy_ids(teacher, problem.text, 40)
        assert reading.captured.rows.shape[0] == 40 == len(enc.cot_char_spans)
        # Char spans from incremental decoding tile the decoded CoT exactly.
        spans = enc.cot_char_spans
        assert "".join(reading.cot_text[s:e] for s, e in spans) == reading.cot_text
        assert reading.cot_text == teacher.tokenizer.decode(cot_ids, skip_special_tokens=True)


def test_generation_stops_at_the_models_own_end_tokens(teacher) -> None:
    greedy = _greedy_ids(teacher, PROBLEMS[0].text, 30)
    stop_at = next(i for i in range(3, 30) if greedy[i] not in greedy[:i])
    # A chat model lists several end tokens in its generation config; the tokenizer knows one.
    teacher.model.generation_config.eos_token_id = [teacher.tokenizer.eos_token_id, greedy[stop_at]]
    config = ExtractionConfig(mode="generate", max_new_tokens=30, batch_size=1, signals=SIGNALS)
    reading = run_teacher(teacher, PROBLEMS[:1], config)[0]
    assert not isinstance(reading, Exception), reading
    enc = reading.encoded
    assert reading.truncated is False
    assert enc.input_ids[enc.cot_token_range[0] :] == greedy[:stop_at]


def test_capture_method_is_part_of_the_config_hash() -> None:
    recompute = ExtractionConfig(capture_method="recompute")
    eager = ExtractionConfig(capture_method="eager")
    assert recompute.config_hash("m", None, "bfloat16") != eager.config_hash("m", None, "bfloat16")
    assert ExtractionConfig(batch_size=1).config_hash("m", None, "float32") == ExtractionConfig(batch_size=8).config_hash(
        "m", None, "float32"
    )


def test_signal_settings_from_job_params() -> None:
    params = {
        "mode": "forced",
        "signals": {"jsd": {"peak_mode": "threshold", "threshold_k": 1.5, "layers": [-2]}, "iaf": {"high_iaf_top_k": 3}},
        "heads": "0,2",
        "aggregation": "max",
        "context": "input",
        "capture_method": "eager",
    }
    config = ExtractionConfig.from_params(params)
    jsd = config.signals.jsd
    assert (jsd.layers, jsd.heads, jsd.aggregation, jsd.context) == ((-2,), (0, 2), "max", "input")
    assert (jsd.peak_mode, jsd.threshold_k, config.signals.iaf.high_iaf_top_k) == ("threshold", 1.5, 3)
    assert config.capture_method == "eager"
    recorded = config.capture_settings()
    assert recorded["capture_method"] == "eager" and recorded["signals"]["jsd"]["heads"] == [0, 2]
    assert ExtractionConfig.from_params({"layers": "-1,-2"}).signals.jsd.layers == (-1, -2)
    assert ExtractionConfig.from_params({"signals": json.dumps({"jsd": {"layers": [1]}})}).signals.jsd.layers == (1,)
    with pytest.raises(ValueError):
        ExtractionConfig.from_params({"signals": {"jsd": {"no_such_setting": 1}}})
    with pytest.raises(ValueError):
        ExtractionConfig.from_params({"capture_method": "flash"})


def test_cli_extract_records_signal_settings(db_session, teacher_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(GSM8K), "--dataset", "gsm8k", "--json"]).exit_code == 0
    settings = tmp_path / "signals.json"
    settings.write_text(json.dumps({"jsd": {"peak_prominence": 0.01, "peak_distance": 5}}))
    args = ["extract", "--dataset", "gsm8k", "--limit", "2", "--teacher", str(teacher_dir), "--mode", "forced",
            "--device", "cpu", "--json", "--signals", str(settings), "--layers", "0,-1", "--heads", "1,3",
            "--aggregation", "max", "--context", "input", "--capture-method", "eager"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["extracted"] == 2
    row = db_session.scalar(select(TeacherConfig))
    jsd = row.capture["signals"]["jsd"]
    assert row.capture["capture_method"] == "eager"
    assert (jsd["layers"], jsd["heads"], jsd["aggregation"], jsd["context"]) == ([0, -1], [1, 3], "max", "input")
    assert (jsd["peak_prominence"], jsd["peak_distance"]) == (0.01, 5)
    bad = runner.invoke(app, [*args[:-2], "--capture-method", "flash"])
    assert bad.exit_code != 0


def test_non_finite_attention_fails_the_problem_naming_the_layer(teacher) -> None:
    tokenizer = teacher.tokenizer
    poisoned = tokenizer(" ####", add_special_tokens=False)["input_ids"][-1]
    problems = [SimpleNamespace(text=p.text, gold_solution=p.gold_solution) for p in PROBLEMS]
    problems[1].gold_solution = problems[1].gold_solution.replace("####", "")  # no poisoned token
    assert poisoned not in tokenizer(render_prompt(tokenizer, problems[1].text)[0] + problems[1].gold_solution)["input_ids"]
    with torch.no_grad():
        teacher.model.get_input_embeddings().weight[poisoned] = float("nan")
    for method in ("recompute", "eager"):
        config = ExtractionConfig(mode="forced", batch_size=2, signals=SIGNALS, capture_method=method)
        failed, fine = run_teacher(teacher, problems, config)
        assert isinstance(failed, ValueError), failed
        assert "layer 0" in str(failed) and problems[0].text[:30] in str(failed)
        assert not isinstance(fine, Exception), fine


@pytest.mark.parametrize("n_cot", [4, 10])  # 4: shorter than the smoothing window, so nothing else complains
def test_compute_trace_signals_rejects_non_finite_rows(n_cot: int) -> None:
    rows = np.tril(np.ones((n_cot, n_cot + 4), dtype=np.float32), k=4)
    rows /= rows.sum(axis=1, keepdims=True)
    rows[n_cot // 2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite attention rows: the JSD of CoT tokens"):
        compute_trace_signals(rows, (0, 4), (4, n_cot + 4))
