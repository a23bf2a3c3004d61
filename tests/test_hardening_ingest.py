"""Issue 16, defect 7: ingest validates every field before the insert and reports file:line.

Before: a NUL character, an over-long or non-string MATH ``level`` / ``type`` / ``unique_id``,
invalid UTF-8 or a 100k-deep JSON value gave raw tracebacks (one of 19 KB, dumping every row),
broke ``--json``, and made ``--skip-invalid`` drop the valid records too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import app
from app.db.models import Problem
from app.ingest import IngestError, ingest_file

runner = CliRunner()

GOOD_MATH = {"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "level": "Level 1", "type": "Algebra"}
GOOD_GSM8K = {"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=<<3+2=5>>5\n#### 5"}


def _math(**overrides: object) -> bytes:
    record = {**GOOD_MATH, "problem": f"Problem {json.dumps(overrides, default=str)[:80]}", **overrides}
    return json.dumps(record).encode()


BAD_MATH_LINES: dict[str, tuple[bytes, str]] = {
    "NUL escape": (_math(problem="a\u0000b"), "contains a NUL character"),
    "raw NUL byte": (b'{"problem": "a\x00b", "solution": "\\\\boxed{1}"}', "invalid JSON"),
    "level too long": (_math(level="L" * 33), "field 'level' has 33 characters, more than 32"),
    "level not a string": (_math(level=5), "field 'level' must be a string, got int"),
    "type too long": (_math(type="T" * 65), "field 'type' has 65 characters, more than 64"),
    "type a list": (_math(type=["Algebra"]), "field 'type' must be a string, got list"),
    "unique_id too long": (_math(unique_id="u" * 201), "field 'unique_id' has 201 characters, more than 200"),
    "unique_id an int": (_math(unique_id=17), "field 'unique_id' must be a string, got int"),
    "lone surrogate": (b'{"problem": "x \\ud800 y", "solution": "\\\\boxed{1}"}', "unpaired surrogate"),
    "invalid UTF-8": (b'{"problem": "caf\xe9", "solution": "\\\\boxed{1}"}', "invalid UTF-8 at byte"),
    "100k-deep JSON": (b'{"problem": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "solution too long": (_math(solution="\\boxed{" * 20_000), "has 140,000 characters, more than 100,000"),
    "problem a number": (_math(problem=3), "field 'problem' must be a string, got int"),
}


def _file(tmp_path: Path, lines: list[bytes], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _count(session: Session) -> int:
    session.rollback()
    return session.scalar(select(func.count()).select_from(Problem)) or 0


def _json_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return json.loads(lines[0])


@pytest.mark.parametrize("case", list(BAD_MATH_LINES), ids=list(BAD_MATH_LINES))
def test_each_bad_record_is_one_error_naming_file_and_line(
    db_session: Session, tmp_path: Path, case: str
) -> None:
    line, expected = BAD_MATH_LINES[case]
    path = _file(tmp_path, [json.dumps(GOOD_MATH).encode(), line])
    result = runner.invoke(app, ["ingest", str(path), "--dataset", "math", "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.stderr) < 2000, result.stderr[:3000]
    report = _json_line(result.stdout)
    assert report["inserted"] == 0 and len(report["errors"]) == 1
    assert report["errors"][0].startswith(f"{path}:2: ") and expected in report["errors"][0], report["errors"]
    assert _count(db_session) == 0  # nothing written

    skipped = runner.invoke(app, ["ingest", str(path), "--dataset", "math", "--json", "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    report = _json_line(skipped.stdout)
    assert (report["read"], report["inserted"], len(report["errors"])) == (2, 1, 1)
    assert _count(db_session) == 1  # the valid record is kept


def test_skip_invalid_inserts_every_valid_record_of_a_hostile_file(db_session: Session, tmp_path: Path) -> None:
    valid = [json.dumps({**GOOD_MATH, "problem": f"What is {i}+1?"}).encode() for i in range(3)]
    path = _file(tmp_path, [valid[0], *(line for line, _ in BAD_MATH_LINES.values()), valid[1], b"", valid[2]])
    report = ingest_file(db_session, path, "math", skip_invalid=True)
    db_session.commit()
    assert (report.read, report.inserted, len(report.errors)) == (3 + len(BAD_MATH_LINES), 3, len(BAD_MATH_LINES))
    assert _count(db_session) == 3


def test_skip_invalid_with_every_record_invalid_fails(db_session: Session, tmp_path: Path) -> None:
    path = _file(tmp_path, [BAD_MATH_LINES["NUL escape"][0], BAD_MATH_LINES["invalid UTF-8"][0]])
    result = runner.invoke(app, ["ingest", str(path), "--dataset", "math", "--json", "--skip-invalid"])
    assert result.exit_code == 1, result.output
    assert len(_json_line(result.stdout)["errors"]) == 2
    assert "all 2 record(s) are invalid" in result.stderr
    assert _count(db_session) == 0


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["empty", "blank lines"])
def test_an_empty_file_says_so(db_session: Session, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    result = runner.invoke(app, ["ingest", str(path), "--dataset", "gsm8k", "--json"])
    assert result.exit_code == 1, result.output
    (error,) = _json_line(result.stdout)["errors"]
    assert "no records (the file is empty" in error
    with pytest.raises(IngestError, match="no records"):
        ingest_file(db_session, path, "gsm8k", skip_invalid=True)


def test_gsm8k_nul_and_markup_like_text_are_reported_on_one_line(db_session: Session, tmp_path: Path) -> None:
    bad = json.dumps({"question": "Find [x] and [/y]\u0000", "answer": "#### 1"}).encode()
    path = _file(tmp_path, [json.dumps(GOOD_GSM8K).encode(), bad])
    result = runner.invoke(app, ["ingest", str(path), "--dataset", "gsm8k"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{path}:2: problem 'Find [x] and [/y]': field 'question' contains a NUL character" in result.stderr


def test_an_over_long_line_is_refused_without_reading_it_whole(db_session: Session, tmp_path: Path) -> None:
    huge = b'{"question": "' + b"x" * 3_000_000 + b'", "answer": "#### 1"}'
    path = _file(tmp_path, [huge, json.dumps(GOOD_GSM8K).encode()])
    report = ingest_file(db_session, path, "gsm8k", skip_invalid=True)
    assert report.inserted == 1 and report.errors == [f"{path}:1: problem '?': line longer than 1,000,000 bytes"]
