"""Ingest GSM8K / MATH JSONL into ``problems``: parse (pure), then one all-or-nothing insert.

Record formats:
* gsm8k — ``question``, ``answer`` (reference solution ending in ``#### N``).
* math  — ``problem``, ``solution`` (with ``\\boxed{…}``, nested braces allowed), ``level``,
  ``type``, optional ``unique_id``.

Dedup is by content hash (dataset + problem text); re-ingesting a file inserts nothing. Splits
are assigned per problem from its content hash, so the same problem always lands in the same
split, whatever file or order it comes in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import Dataset, Problem, Split
from app.execution.answers import extract_boxed, extract_gsm8k_answer

DATASETS = ("gsm8k", "math")
INSERT_CHUNK = 2000


class IngestError(ValueError):
    """A file had malformed records; nothing from it was written."""

    def __init__(self, errors: list[RecordError]):
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  … and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} invalid record(s); nothing was written:\n{shown}{more}")


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
    text = obj.get("unique_id") or obj.get("question") or obj.get("problem") or ""
    text = str(text).strip() or fallback
    return text if len(text) <= 60 else text[:57] + "..."


def parse_record(obj: object, dataset: str, file: str, line: int) -> ProblemRecord | RecordError:
    """One decoded JSON value → a problem record, or an error naming the record and the problem."""
    if not isinstance(obj, dict):
        return RecordError(file, line, "?", f"expected a JSON object, got {type(obj).__name__}")
    who = _label_of(obj, f"line {line}")
    text_field, solution_field = ("question", "answer") if dataset == "gsm8k" else ("problem", "solution")
    for name in (text_field, solution_field):
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            return RecordError(file, line, who, f"missing or empty field {name!r}")
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
    external_id = str(obj.get("unique_id") or f"{Path(file).name}:{line}")
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


def parse_jsonl(lines: Iterable[str], dataset: str, file: str) -> tuple[list[ProblemRecord], list[RecordError]]:
    """Parse JSONL text lines (1-based line numbers in errors). Blank lines are ignored."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    records: list[ProblemRecord] = []
    errors: list[RecordError] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            errors.append(RecordError(file, number, "?", f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        parsed = parse_record(obj, dataset, file, number)
        (errors if isinstance(parsed, RecordError) else records).append(parsed)
    return records, errors


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

    The caller owns the transaction: nothing is committed here.
    """
    with path.open(encoding="utf-8") as handle:
        records, errors = parse_jsonl(handle, dataset, str(path))
    if errors and not skip_invalid:
        raise IngestError(errors)
    report = IngestReport(read=len(records) + len(errors), errors=[str(e) for e in errors])

    dataset_row = get_or_create_dataset(session, dataset)
    rows, seen = [], set()
    for record in records:
        if record.content_hash in seen:
            continue
        seen.add(record.content_hash)
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
        report.inserted += len(session.execute(statement).all())
    report.duplicates = len(records) - report.inserted
    return report
