"""Store: schema ⇄ migration agreement, ingest idempotence and all-or-nothing, splits, views."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from app.cli import app
from app.db.migrate import downgrade, upgrade
from app.db.models import (
    Attribution,
    AttributionCategory,
    Base,
    Dataset,
    Label,
    LabelSource,
    LabelTask,
    Problem,
    Round,
    RoundStatus,
    Split,
)
from app.ingest import IngestError, assign_split, content_hash, ingest_file
from tests.conftest import FIXTURES, create_database, drop_database

GSM8K = FIXTURES / "gsm8k_sample.jsonl"
MATH = FIXTURES / "math_sample.jsonl"


def test_models_and_migration_agree(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_base_then_upgrade_head() -> None:
    name = f"mycelium_migr_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        upgrade(url)
        downgrade(url, "base")
        engine = create_engine(url)
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
            types = conn.execute(text("SELECT count(*) FROM pg_type WHERE typname = 'label_task'")).scalar()
        assert (tables, types) == (1, 0)  # only alembic_version is left
        upgrade(url)
        with engine.connect() as conn:
            views = conn.execute(text("SELECT count(*) FROM pg_views WHERE viewname = 'error_stats'")).scalar()
        assert views == 1
        engine.dispose()
    finally:
        drop_database(name)


def test_ingest_is_idempotent(db_session) -> None:
    first = ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    assert (first.read, first.inserted, first.duplicates, first.errors) == (60, 60, 0, [])
    again = ingest_file(db_session, GSM8K, "gsm8k")
    db_session.commit()
    assert (again.read, again.inserted, again.duplicates) == (60, 0, 60)
    natalia = db_session.scalar(select(Problem).where(Problem.text.like("Natalia sold clips%")))
    assert natalia.gold_answer == "72"
    assert natalia.external_id == "gsm8k_sample.jsonl:1"


def test_math_ingest_extracts_nested_boxed_answers(db_session) -> None:
    report = ingest_file(db_session, MATH, "math")
    db_session.commit()
    assert report.inserted == 60
    answers = dict(db_session.execute(select(Problem.external_id, Problem.gold_answer)).all())
    nested = [a for a in answers.values() if "{" in a]
    assert nested, "the MATH fixture must contain nested-brace answers"
    levels = set(db_session.scalars(select(Problem.level)))
    assert {"Level 1", "Level 5"} <= levels


def _bad_file(tmp_path: Path) -> Path:
    lines = GSM8K.read_text().splitlines()[:4]
    broken = json.loads(lines[2])
    broken["answer"] = broken["answer"].split("####")[0]
    lines[2] = json.dumps(broken)
    lines.append('{"question": "What is 2+2?", ')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_input_writes_nothing_and_names_the_record(db_session, tmp_path: Path) -> None:
    path = _bad_file(tmp_path)
    with pytest.raises(IngestError) as caught:
        ingest_file(db_session, path, "gsm8k")
    db_session.rollback()
    message = str(caught.value)
    assert message == (
        "2 invalid record(s); nothing was written:\n"
        f"  {path}:3: problem 'Betty is saving money for a new wallet which costs $100. ...': "
        "no '#### <answer>' line in the answer\n"
        f"  {path}:5: problem '?': invalid JSON (Expecting property name enclosed in double quotes at column 30)"
    )
    assert db_session.scalar(select(func.count()).select_from(Problem)) == 0


def test_cli_bad_input_exit_code_and_skip_invalid(database_url: str, db_session, tmp_path: Path) -> None:
    path = _bad_file(tmp_path)
    runner = CliRunner()
    failed = runner.invoke(app, ["ingest", str(path), "--dataset", "gsm8k", "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout.strip().splitlines()[-1])["inserted"] == 0
    assert db_session.scalar(select(func.count()).select_from(Problem)) == 0

    skipped = runner.invoke(app, ["ingest", str(path), "--dataset", "gsm8k", "--json", "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert (report["read"], report["inserted"], report["duplicates"], len(report["errors"])) == (5, 3, 0, 2)


def test_split_is_deterministic_and_by_problem(db_session) -> None:
    h = content_hash("gsm8k", "Natalia sold clips")
    assert assign_split(h, 0.1, 0.1) == assign_split(h, 0.1, 0.1)
    assert content_hash("gsm8k", "a  b\n") == content_hash("gsm8k", "a b")
    draws = [assign_split(content_hash("gsm8k", f"problem {i}"), 0.1, 0.2) for i in range(5000)]
    assert abs(draws.count(Split.TEST) / 5000 - 0.2) < 0.02
    assert abs(draws.count(Split.DEV) / 5000 - 0.1) < 0.02
    ingest_file(db_session, GSM8K, "gsm8k")
    splits = dict(db_session.execute(select(Problem.content_hash, Problem.split)).all())
    assert all(split == assign_split(h, 0.1, 0.1) for h, split in splits.items())
    with pytest.raises(ValueError, match="sum to < 1"):
        assign_split(h, 0.6, 0.5)


def test_forced_split_option(db_session) -> None:
    ingest_file(db_session, GSM8K, "gsm8k", split=Split.TEST)
    assert set(db_session.scalars(select(Problem.split))) == {Split.TEST}


def test_views_return_the_right_numbers(db_session) -> None:
    dataset = Dataset(name="gsm8k")
    db_session.add(dataset)
    db_session.flush()
    problems = [
        Problem(dataset_id=dataset.id, text=f"p{i}", gold_answer="1", split=Split.DEV, level=None, content_hash=f"h{i}")
        for i in range(5)
    ]
    round_1 = Round(number=1, status=RoundStatus.OPEN, strategy="entropy", budget=5, model_version="r1")
    db_session.add_all([*problems, round_1])
    db_session.flush()
    categories = [None, None, AttributionCategory.SEGMENTATION, AttributionCategory.SEGMENTATION, AttributionCategory.EXECUTION]
    for problem, category in zip(problems, categories):
        db_session.add(
            Attribution(problem_id=problem.id, round_id=round_1.id, model_version="v1", category=category, correct=category is None)
        )
    teacher = Label(problem_id=problems[0].id, task=LabelTask.C1, payload={}, source=LabelSource.TEACHER)
    db_session.add(teacher)
    db_session.flush()
    human = Label(problem_id=problems[0].id, task=LabelTask.C1, payload={}, source=LabelSource.HUMAN, supersedes_id=teacher.id)
    other = Label(problem_id=problems[1].id, task=LabelTask.C1, payload={}, source=LabelSource.TEACHER)
    db_session.add_all([human, other])
    db_session.flush()
    db_session.add(
        Label(problem_id=problems[1].id, task=LabelTask.C1, payload={}, source=LabelSource.HUMAN,
              supersedes_id=other.id, is_withdrawal=True)
    )
    db_session.commit()

    errors = db_session.execute(
        text("SELECT category, n, share FROM error_stats WHERE model_version = 'v1' AND round = 1 ORDER BY category")
    ).all()
    assert errors == [("CORRECT", 2, Decimal("0.4000")), ("EXECUTION", 1, Decimal("0.2000")), ("SEGMENTATION", 2, Decimal("0.4000"))]
    labels = db_session.execute(
        text("SELECT task, source, total_rows, current_rows, withdrawals FROM label_stats ORDER BY source")
    ).all()
    assert labels == [("C1", "human", 2, 1, 1), ("C1", "teacher", 2, 0, 0)]
    current = db_session.execute(text("SELECT problem_id, source FROM current_labels")).all()
    assert current == [(problems[0].id, "human")]
