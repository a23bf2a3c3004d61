"""Issue 16, defect 8: ``check-solutions`` on a malformed line names the file and line in one
line instead of printing a raw traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.execution.check import MalformedRecord, check_solutions

runner = CliRunner()
GOOD = json.dumps({"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=<<3+2=5>>5\n#### 5"})
GOOD_MATH = json.dumps({"problem": "What is $1+1$?", "solution": "$\\boxed{2}$"})

MALFORMED: dict[str, tuple[str, bytes, str]] = {
    "truncated JSON": ("gsm8k", b'{"question": "x", "answer": ', "invalid JSON (Expecting value at column"),
    "not an object": ("gsm8k", b"[1, 2, 3]", "expected a JSON object, got list"),
    "invalid UTF-8": ("gsm8k", b'{"question": "caf\xe9", "answer": "#### 1"}', "invalid UTF-8 at byte"),
    "deep JSON": ("math", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "answer a number": ("gsm8k", b'{"question": "x", "answer": 5}', "field 'answer' must be a string, got int"),
    "solution a list": ("math", b'{"problem": "x", "solution": ["a"]}', "field 'solution' must be a string, got list"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_line_is_one_error_naming_file_and_line(tmp_path: Path, case: str) -> None:
    dataset, bad, expected = MALFORMED[case]
    path = tmp_path / "solutions.jsonl"
    good = (GOOD if dataset == "gsm8k" else GOOD_MATH).encode()
    path.write_bytes(good + b"\n\n" + bad + b"\n" + good + b"\n")
    with pytest.raises(MalformedRecord) as caught:
        check_solutions(path, dataset)
    assert str(caught.value).startswith(f"{path}:3: ") and expected in str(caught.value)

    result = runner.invoke(app, ["check-solutions", str(path), "--dataset", dataset, "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{path.name}:3: " in lines[0], result.stderr


def test_a_solution_too_long_to_scan_is_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    huge = json.dumps({"problem": "x", "solution": "\\boxed{" * 300_000})
    path.write_text(GOOD_MATH + "\n" + huge + "\n")
    summary = check_solutions(path, "math")
    assert summary["total"] == 2 and summary["boxed_found"] == 1
    assert summary["failures_by_reason"]["input_too_long"] == 1
