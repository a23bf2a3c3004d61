"""Benchmark: streamed per-layer attention capture vs a naive ``output_attentions=True`` pass.

A 12-layer tiny Qwen2 (random weights) reads one ≈1,024-token prompt + CoT; both paths compute
the same signals (all 12 layers averaged, mean over heads). Each path runs in its own
subprocess so its peak resident memory is its own: peak = max RSS during the pass minus the
RSS just before it (model already loaded). Prints one JSON line:
``{"peak_mem_mb", "naive_peak_mem_mb", "mem_ratio", "seconds", "naive_seconds", "max_abs_diff"}``.

Usage: ``python bench/extraction.py [--layers 12] [--heads 8] [--hidden 256] [--tokens 1024]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.signals.config import JSDConfig, SignalConfig  # noqa: E402
from app.signals.trace import compute_trace_signals  # noqa: E402
from app.teacher.capture import SampleLayout, full_attention_capture  # noqa: E402
from app.teacher.loading import load_teacher  # noqa: E402
from app.teacher.prompting import encode_problem_and_cot  # noqa: E402
from app.teacher.run import ExtractionConfig, capture_batch  # noqa: E402
from app.teacher.tiny import build_tiny_teacher  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "gsm8k_sample.jsonl"


def long_example(tokenizer, target_tokens: int) -> tuple[str, str]:
    """The first fixture problem and a CoT of reference solutions concatenated to ≈ target tokens."""
    records = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    problem, cot = records[0]["question"], ""
    for record in records:
        if len(encode_problem_and_cot(tokenizer, problem, cot + record["answer"] + "\n").input_ids) > target_tokens:
            break
        cot += record["answer"] + "\n"
    return problem, cot


def run_one(mode: str, model_dir: Path, tokens: int, out: Path) -> dict:
    teacher = load_teacher(str(model_dir), dtype="float32", device="cpu", attn_implementation="sdpa" if mode == "streamed" else "eager")
    n_layers = teacher.model.config.num_hidden_layers
    config = ExtractionConfig(signals=SignalConfig(jsd=JSDConfig(layers=tuple(range(n_layers)))))
    problem, cot = long_example(teacher.tokenizer, tokens)
    encoded = encode_problem_and_cot(teacher.tokenizer, problem, cot)
    layout = SampleLayout(len(encoded.input_ids), encoded.problem_token_range, encoded.cot_token_range)
    torch.set_num_threads(1)
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if mode == "streamed":
        captured = capture_batch(teacher, [encoded], config)[0]
    else:
        with torch.no_grad():
            output = teacher.model(torch.tensor([encoded.input_ids]), output_attentions=True, use_cache=False)
        captured = full_attention_capture(output.attentions, [layout], config.signals.jsd)[0]
        del output
    signals = compute_trace_signals(
        captured.rows, encoded.problem_token_range, encoded.cot_token_range, config.signals, captured.head_input_fraction
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    np.savez(out, jsd=signals.jsd_raw, iaf=signals.iaf, rows=captured.rows)
    return {"peak_mem_mb": (peak - before) / 2**20, "seconds": seconds, "tokens": len(encoded.input_ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--child", choices=["streamed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.model_dir, args.tokens, args.out)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        records = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
        model_dir = build_tiny_teacher(
            Path(tmp) / "teacher", [r["question"] + "\n" + r["answer"] for r in records],
            num_layers=args.layers, hidden_size=args.hidden, num_heads=args.heads,
        )
        results = {}
        for mode in ("naive", "streamed"):
            out = Path(tmp) / f"{mode}.npz"
            completed = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--model-dir", str(model_dir), "--out", str(out),
                 "--tokens", str(args.tokens)],
                capture_output=True, text=True, check=True,
            )
            results[mode] = json.loads(completed.stdout.strip().splitlines()[-1])
            results[mode]["arrays"] = dict(np.load(out))
        diff = max(
            float(np.abs(results["streamed"]["arrays"][key] - results["naive"]["arrays"][key]).max())
            for key in ("jsd", "iaf", "rows")
        )
    streamed, naive = results["streamed"], results["naive"]
    print(json.dumps({
        "tokens": streamed["tokens"],
        "peak_mem_mb": round(streamed["peak_mem_mb"], 1),
        "naive_peak_mem_mb": round(naive["peak_mem_mb"], 1),
        "mem_ratio": round(naive["peak_mem_mb"] / streamed["peak_mem_mb"], 2),
        "seconds": round(streamed["seconds"], 3),
        "naive_seconds": round(naive["seconds"], 3),
        "max_abs_diff": diff,
    }))


if __name__ == "__main__":
    main()
