"""Ingest GSM8K / MATH JSONL into ``problems``: parse (pure), then one all-or-nothing insert.

Record formats:
* gsm8k — ``question``, ``answer`` (reference solution ending in ``#### N``).
* math  — ``problem``, ``solution`` (with ``\\boxed{…}``, nested braces allowed), ``level``,
  ``type``, optional ``unique_id``.

Dedup is by content hash (dataset + problem text); re-ingesting a file inserts nothing. Splits
are assigned per problem from its content hash, so the same problem always lands in the same
split, whatever file or order it comes in.

Every field is validated before anything is inserted — UTF-8, JSON depth, types, lengths (the
columns' and :data:`FIELD_LIMITS`), NUL characters and unpaired surrogates (Postgres stores
neither) — and each error names the file and line, so a bad record is reported, never half
written, and ``skip_invalid`` inserts exactly the valid ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db.models import Dataset, Problem, Split
from app.execution.answers import extract_boxed, extract_gsm8k_answer

DATASETS = ("gsm8k", "math")
INSERT_CHUNK = 2000
MAX_LINE_BYTES = 1_000_000  # a longer line cannot hold a record within FIELD_LIMITS
# Largest accepted value per field, in characters: the column's length where it has one, and
# far above the real data elsewhere (GSM8K/MATH problems < 5k, solutions < 10k characters).
FIELD_LIMITS: dict[str, int] = {
    "question": 50_000,
    "problem": 50_000,
    "answer": 100_000,
    "solution": 100_000,
    "level": 32,
    "type": 64,
    "unique_id": 200,
}
OPTIONAL_STRING_FIELDS = {"gsm8k": (), "math": ("level", "type", "unique_id")}


class IngestError(ValueError):
    """A file that could not be ingested; nothing from it was written.

    ``errors`` lists the offending records (each naming its file and line); ``message``, when
    given, replaces the default summary.
    """

    def __init__(self, errors: list[RecordError], message: str | None = None):
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  … and {len(errors) - 20} more" if len(errors) > 20 else ""
        summary = message or f"{len(errors)} invalid record(s); nothing was written"
        super().__init__(f"{summary}:\n{shown}{more}" if errors else summary)


@dataclass(frozen=True)
class RecordError:
    file: str
    line: int
    problem: str  # external id or the first words of the problem text, for humans
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: problem {self.problem!r}: {self.message}"


@dataclass(frozen=True)
class ProblemRecord:
    line: int
    external_id: str
    text: str
    gold_answer: str
    gold_solution: str
    level: str | None
    subject: str | None
    content_hash: str


@dataclass
class IngestReport:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def content_hash(dataset: str, problem_text: str) -> str:
    """sha256 hex of the dataset name and the whitespace-normalised problem text."""
    normalised = " ".join(problem_text.split())
    return hashlib.sha256(f"{dataset}\n{normalised}".encode()).hexdigest()


def assign_split(problem_hash: str, dev_fraction: float, test_fraction: float) -> Split:
    """Deterministic problem-level split: the hash's first 8 hex digits as a uniform draw in [0, 1)."""
    if not (0 <= dev_fraction and 0 <= test_fraction and dev_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must be ≥ 0 and sum to < 1 (dev={dev_fraction}, test={test_fraction})")
    draw = int(problem_hash[:8], 16) / 0x1_0000_0000
    if draw < test_fraction:
        return Split.TEST
    if draw < test_fraction + dev_fraction:
        return Split.DEV
    return Split.TRAIN


def _label_of(obj: dict, fallback: str) -> str:
    text = next((v for v in (obj.get(k) for k in ("unique_id", "question", "problem")) if isinstance(v, str)), "")
    text = " ".join(text[:200].replace("\x00", " ").split()) or fallback
    return text if len(text) <= 60 else text[:57] + "..."


def _field_problem(name: str, value: object, required: bool) -> str | None:
    """Why ``value`` cannot be stored as field ``name`` (None if it can)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        return f"field {name!r} must be a string, got {type(value).__name__}"
    if required and not value.strip():
        return f"missing or empty field {name!r}"
    limit = FIELD_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        return f"field {name!r} has {len(value):,} characters, more than {limit:,}"
    if "\x00" in value:
        return f"field {name!r} contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"field {name!r} contains an unpaired surrogate (\\ud800–\\udfff)"
    return None


def parse_record(obj: object, dataset: str, file: str, line: int) -> ProblemRecord | RecordError:
    """One decoded JSON value → a problem record, or an error naming the record and the problem."""
    if not isinstance(obj, dict):
        return RecordError(file, line, "?", f"expected a JSON object, got {type(obj).__name__}")
    who = _label_of(obj, f"line {line}")
    text_field, solution_field = ("question", "answer") if dataset == "gsm8k" else ("problem", "solution")
    for name in (text_field, solution_field):
        if obj.get(name) is None or obj.get(name) == "":
            return RecordError(file, line, who, f"missing or empty field {name!r}")
        problem = _field_problem(name, obj.get(name), required=True)
        if problem:
            return RecordError(file, line, who, problem)
    for name in OPTIONAL_STRING_FIELDS[dataset]:
        problem = _field_problem(name, obj.get(name), required=False)
        if problem:
            return RecordError(file, line, who, problem)
    text, solution = obj[text_field], obj[solution_field]
    if dataset == "gsm8k":
        gold = extract_gsm8k_answer(solution)
        if gold is None:
            return RecordError(file, line, who, "no '#### <answer>' line in the answer")
        level = subject = None
    else:
        gold = extract_boxed(solution)
        if gold is None:
            return RecordError(file, line, who, "no \\boxed{…} answer in the solution")
        level, subject = obj.get("level"), obj.get("type")
    external_id = obj.get("unique_id") or f"{Path(file).name}:{line}"[-200:]
    return ProblemRecord(
        line=line,
        external_id=external_id,
        text=text,
        gold_answer=gold,
        gold_solution=solution,
        level=level,
        subject=subject,
        content_hash=content_hash(dataset, text),
    )


def parse_jsonl(
    lines: Iterable[str | bytes], dataset: str, file: str
) -> tuple[list[ProblemRecord], list[RecordError]]:
    """Parse JSONL lines, text or UTF-8 bytes (1-based line numbers in errors). Blank lines are ignored."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    records: list[ProblemRecord] = []
    errors: list[RecordError] = []
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            if len(raw) > MAX_LINE_BYTES:
                errors.append(RecordError(file, number, "?", f"line longer than {MAX_LINE_BYTES:,} bytes"))
                continue
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.append(RecordError(file, number, "?", f"invalid UTF-8 at byte {exc.start + 1} of the line"))
                continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            errors.append(RecordError(file, number, "?", f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        except RecursionError:
            errors.append(RecordError(file, number, "?", "invalid JSON (nested too deeply)"))
            continue
        parsed = parse_record(obj, dataset, file, number)
        (errors if isinstance(parsed, RecordError) else records).append(parsed)
    return records, errors


def _read_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's lines as bytes; a line over :data:`MAX_LINE_BYTES` is cut short (and so refused)
    without ever being held in memory whole."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
        yield line


def get_or_create_dataset(session: Session, name: str) -> Dataset:
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        session.execute(insert(Dataset).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    assert dataset is not None
    return dataset


def ingest_file(
    session: Session,
    path: Path,
    dataset: str,
    *,
    split: Split | None = None,
    skip_invalid: bool = False,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> IngestReport:
    """Insert the problems of a JSONL file; raises :class:`IngestError` (writing nothing) on bad records.

    With ``skip_invalid`` the valid records are inserted and the others reported, but a file whose
    every record is invalid is still an error. An empty file is an error. The caller owns the
    transaction: nothing is committed here.
    """
    try:
        with path.open("rb") as handle:
            records, errors = parse_jsonl(_read_lines(handle), dataset, str(path))
    except OSError as exc:
        raise IngestError([], f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not records and not errors:
        raise IngestError([], f"{path}: no records (the file is empty or has only blank lines)")
    if errors and not skip_invalid:
        raise IngestError(errors)
    if errors and not records:
        raise IngestError(errors, f"all {len(errors)} record(s) are invalid; nothing was written")
    report = IngestReport(read=len(records) + len(errors), errors=[str(e) for e in errors])

    dataset_row = get_or_create_dataset(session, dataset)
    rows, row_lines, seen = [], [], set()
    for record in records:
        if record.content_hash in seen:
            continue
        seen.add(record.content_hash)
        row_lines.append(record.line)
        rows.append(
            {
                "dataset_id": dataset_row.id,
                "external_id": record.external_id,
                "text": record.text,
                "gold_answer": record.gold_answer,
                "gold_solution": record.gold_solution,
                "level": record.level,
                "subject": record.subject,
                "split": split or assign_split(record.content_hash, dev_fraction, test_fraction),
                "content_hash": record.content_hash,
            }
        )
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = (
            insert(Problem)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(Problem.id)
        )
        try:
            report.inserted += len(session.execute(statement).all())
        except DBAPIError as exc:  # validation should make this impossible; never dump the rows
            lines = row_lines[start : start + INSERT_CHUNK]
            reason = (str(exc.orig).strip().splitlines() or [type(exc).__name__])[0]
            raise IngestError(
                [], f"{path}: lines {lines[0]}–{lines[-1]}: the database refused the insert ({reason})"
            ) from None
    report.duplicates = len(records) - report.inserted
    return report
