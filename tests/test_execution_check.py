"""check_solutions on the in-repo fixture samples (the full files are benchmarked in bench/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.execution.check import check_solutions

FIXTURES = Path(__file__).parent / "fixtures"


def test_gsm8k_sample() -> None:
    seen: list[int] = []
    summary = check_solutions(FIXTURES / "gsm8k_sample.jsonl", "gsm8k", seen.append)
    assert set(summary) == {"total", "annotated", "reproduced", "reproduced_annotated", "failures_by_reason"}
    assert summary["reproduced_annotated"] <= min(summary["reproduced"], summary["annotated"])
    assert summary["total"] == 60 and summary["annotated"] == 59
    assert summary["reproduced"] / summary["annotated"] >= 0.98
    assert summary["reproduced"] + sum(summary["failures_by_reason"].values()) == summary["total"]
    assert seen == list(range(1, 61))


def test_math_sample() -> None:
    summary = check_solutions(FIXTURES / "math_sample.jsonl", "math")
    assert set(summary) == {"total", "boxed_found", "self_equivalent", "parsed_steps",
                            "failures_by_reason"}
    assert summary["total"] == 60
    assert summary["boxed_found"] == 60
    assert summary["self_equivalent"] == 60
    assert summary["parsed_steps"] > 30
    assert "boxed_not_found" not in summary["failures_by_reason"]


def test_unknown_dataset(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("")
    with pytest.raises(ValueError):
        check_solutions(path, "aime")
