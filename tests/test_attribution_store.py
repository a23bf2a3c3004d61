"""Attribution DB shell on the real Postgres: one row per evaluated problem with the right category,
current (human-corrected) labels as reference, idempotency, the views, the job kind and the commands."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from app.attribution.store import attribute_problems, parse_model_version
from app.cli import app
from app.db.migrate import downgrade, upgrade
from app.db.models import (
    Attribution, AttributionCategory, Dataset, InferenceResult, Label, LabelSource, LabelTask, Prediction,
    Problem, Round, RoundStatus, SpecialistModel, Split, TeacherConfig, Trace, TraceStatus,
)
from tests.conftest import create_database, drop_database
from tests.test_attribution_cases import (
    COT_NO_GOLD, COT_RIGHT, COT_WRONG_ANSWER, GOLD, PIPELINE_FAULTS, TEXT, prediction, reference,
)

V1 = "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"
V2 = "C1v2.C2v2.C3v2.C4v2.C5v2.C6v2"
# name → (dataset, expected outcome)
CASES = {
    "correct": ("gsm8k", "CORRECT"),
    "no_gold_in_cot": ("gsm8k", "ANSWER_NOT_IN_COT"),
    "teacher_wrong": ("gsm8k", "TEACHER_ERROR"),
    "segmentation": ("gsm8k", "SEGMENTATION"),
    "classification": ("gsm8k", "CLASSIFICATION"),
    "extraction": ("gsm8k", "EXTRACTION"),
    "dependency": ("gsm8k", "DEPENDENCY"),
    "selection": ("gsm8k", "SELECTION"),
    "execution": ("gsm8k", "EXECUTION"),
    "human_corrected": ("gsm8k", "EXECUTION"),
    "no_reference": ("gsm8k", "NO_REFERENCE"),
    "not_evaluated": ("gsm8k", None),
    "math_correct": ("math", "CORRECT"),
    "math_wrong": ("math", "EXECUTION"),
}


def _models(session, version: str) -> dict[str, SpecialistModel]:
    models = {task: SpecialistModel(specialist=LabelTask(task), version=v, backbone="minilm")
              for task, v in parse_model_version(version).items()}
    session.add_all(models.values())
    session.flush()
    return models


def _result(session, problem_id: int, version: str, *, correct: bool | None, in_beam: bool = False,
            round_id: int | None = None) -> InferenceResult:
    answer = GOLD if correct else "70"
    candidates = [{"answer": answer, "probability": 0.7}] + ([{"answer": GOLD, "probability": 0.3}] if in_beam else [])
    row = InferenceResult(problem_id=problem_id, model_version=version, round_id=round_id, answer=answer,
                          probability=0.7, paths_explored=4, disagreement=in_beam, candidates=candidates,
                          ms=12.0, correct=correct, in_beam=in_beam if correct is not None else None)
    session.add(row)
    return row


def _predict(session, models: dict[str, SpecialistModel], problem_id: int, payloads: dict) -> None:
    for task, payload in payloads.items():
        session.add(Prediction(model_id=models[task].id, problem_id=problem_id, task=LabelTask(task), payload=payload))


def seed(session) -> dict[str, int]:
    """The CASES problems with reference labels, V1 predictions, results and traces; returns name → id."""
    datasets = {name: Dataset(name=name) for name in ("gsm8k", "math")}
    session.add_all(datasets.values())
    config = TeacherConfig(model_name="tiny", dtype="float32", mode="generate", prompt="p", max_new_tokens=64,
                           capture={}, config_hash="c" * 64)
    session.add(config)
    session.flush()
    models = _models(session, V1)
    ids: dict[str, int] = {}
    for i, (name, (dataset, _)) in enumerate(CASES.items()):
        problem = Problem(dataset_id=datasets[dataset].id, text=TEXT, gold_answer=GOLD, split=Split.TEST,
                          level="Level 2" if dataset == "math" else None, content_hash=f"{i:064d}",
                          external_id=f"{dataset}:{name}")
        session.add(problem)
        session.flush()
        ids[name] = problem.id
        if name != "no_reference":
            for task, payload in reference().items():
                session.add(Label(problem_id=problem.id, task=LabelTask(task), payload=payload,
                                  source=LabelSource.EXECUTION))
        pred = prediction()
        fault = PIPELINE_FAULTS.get(CASES[name][1] or "")
        if fault:
            fault(pred)
        _predict(session, models, problem.id, pred)
        cot = {"no_gold_in_cot": (COT_NO_GOLD, "68", False), "teacher_wrong": (COT_WRONG_ANSWER, "70", False)}.get(
            name, (COT_RIGHT, GOLD, True))
        session.add(Trace(problem_id=problem.id, teacher_config_id=config.id, status=TraceStatus.SUCCEEDED,
                          cot_text=cot[0], teacher_answer=cot[1], correct=cot[2]))
        correct = None if name == "not_evaluated" else CASES[name][1] == "CORRECT"
        _result(session, problem.id, V1, correct=correct, in_beam=name == "selection")
    # A reviewer corrected the reference op of step 1 (execution label said MUL): the prediction DIV agrees.
    machine = session.scalar(select(Label).where(Label.problem_id == ids["human_corrected"], Label.task == LabelTask.C2))
    machine.payload = {"steps": [{"step": 1, "op": "MUL", "region": None}, {"step": 2, "op": "ADD", "region": None}]}
    session.flush()
    session.add(Label(problem_id=ids["human_corrected"], task=LabelTask.C2, payload=reference()["C2"],
                      source=LabelSource.HUMAN, supersedes_id=machine.id))
    session.commit()
    return ids


def outcomes(session, version: str = V1) -> dict[int, tuple[str | None, str]]:
    rows = session.execute(select(Attribution.problem_id, Attribution.category, Attribution.detail)
                           .where(Attribution.model_version == version)).all()
    return {pid: (str(cat) if cat else None, detail["outcome"]) for pid, cat, detail in rows}


def test_each_problem_gets_exactly_its_category(db_session) -> None:
    ids = seed(db_session)
    report = attribute_problems(db_session, V1, list(ids.values()))
    db_session.commit()
    assert report.not_evaluated == [ids["not_evaluated"]]
    assert report.attributed == len(CASES) - 1
    got = outcomes(db_session)
    expected = {ids[name]: outcome for name, (_, outcome) in CASES.items() if outcome}
    assert {pid: outcome for pid, (_, outcome) in got.items()} == expected
    assert got[ids["no_reference"]] == (None, "NO_REFERENCE")
    assert got[ids["correct"]] == (None, "CORRECT")
    row = db_session.scalar(select(Attribution).where(Attribution.problem_id == ids["classification"]))
    assert (row.correct, row.detail["specialist"], row.detail["failures"][0]["predicted"],
            row.detail["failures"][0]["reference"]) == (False, "C2", "MUL", "DIV")
    teacher = db_session.scalar(select(Attribution).where(Attribution.problem_id == ids["teacher_wrong"]))
    assert teacher.detail["failures"][0]["trace_id"] is not None


def test_attribution_is_idempotent_per_problem_version_round(db_session) -> None:
    ids = seed(db_session)
    first = attribute_problems(db_session, V1, list(ids.values()))
    db_session.commit()
    again = attribute_problems(db_session, V1, list(ids.values()))
    db_session.commit()
    assert (first.created, again.created, again.attributed) == (len(CASES) - 1, 0, len(CASES) - 1)
    assert db_session.scalar(select(func.count()).select_from(Attribution)) == len(CASES) - 1
    # new evaluation facts update the row in place
    result = db_session.scalar(select(InferenceResult).where(InferenceResult.problem_id == ids["selection"]))
    result.in_beam = False
    db_session.commit()
    attribute_problems(db_session, V1, [ids["selection"]])
    db_session.commit()
    assert outcomes(db_session)[ids["selection"]] == ("EXECUTION", "EXECUTION")
    # another round is another row
    round_1 = Round(number=1, status=RoundStatus.OPEN, strategy="entropy", budget=5, model_version="r1")
    db_session.add(round_1)
    db_session.flush()
    attribute_problems(db_session, V1, [ids["selection"]], round_id=round_1.id)
    attribute_problems(db_session, V1, [ids["selection"]], round_id=round_1.id)
    db_session.commit()
    rounds = db_session.scalars(select(Attribution.round_id).where(Attribution.problem_id == ids["selection"])).all()
    assert sorted(rounds, key=str) == sorted([None, round_1.id], key=str)


def test_views_return_the_attributed_rows(db_session) -> None:
    ids = seed(db_session)
    attribute_problems(db_session, V1, list(ids.values()))
    db_session.commit()
    stats = db_session.execute(text(
        "SELECT category, n, share FROM error_stats WHERE model_version = :v AND dataset = 'gsm8k' ORDER BY category"
    ), {"v": V1}).all()
    eleventh, two_elevenths = Decimal("0.0909"), Decimal("0.1818")
    assert stats == [
        ("ANSWER_NOT_IN_COT", 1, eleventh), ("CLASSIFICATION", 1, eleventh), ("CORRECT", 1, eleventh),
        ("DEPENDENCY", 1, eleventh), ("EXECUTION", 2, two_elevenths), ("EXTRACTION", 1, eleventh),
        ("NO_REFERENCE", 1, eleventh), ("SEGMENTATION", 1, eleventh), ("SELECTION", 1, eleventh),
        ("TEACHER_ERROR", 1, eleventh),
    ]
    by_dataset = db_session.execute(text(
        "SELECT dataset, split, category, n, share FROM error_by_dataset WHERE model_version = :v AND dataset = 'math' "
        "ORDER BY category"), {"v": V1}).all()
    assert by_dataset == [("math", "test", "CORRECT", 1, Decimal("0.5000")), ("math", "test", "EXECUTION", 1, Decimal("0.5000"))]
    sums = db_session.execute(text(
        "SELECT dataset, sum(share) FROM error_by_dataset WHERE model_version = :v GROUP BY dataset ORDER BY dataset"
    ), {"v": V1}).all()
    assert [(d, round(float(s), 2)) for d, s in sums] == [("gsm8k", 1.0), ("math", 1.0)]
    specialists = db_session.execute(text(
        "SELECT specialist, n, share, error_share FROM error_by_specialist "
        "WHERE model_version = :v AND dataset = 'gsm8k'"), {"v": V1}).all()
    assert sorted(specialists) == [
        ("C1", 1, eleventh, Decimal("0.1000")), ("C2", 1, eleventh, Decimal("0.1000")),
        ("C3", 1, eleventh, Decimal("0.1000")), ("C5", 1, eleventh, Decimal("0.1000")),
        ("CORRECT", 1, eleventh, None), ("NO_REFERENCE", 1, eleventh, Decimal("0.1000")),
        ("executor", 2, two_elevenths, Decimal("0.2000")), ("search", 1, eleventh, Decimal("0.1000")),
        ("teacher", 2, two_elevenths, Decimal("0.2000")),
    ]


def test_round_comparison_before_and_after_retraining(db_session) -> None:
    ids = seed(db_session)
    attribute_problems(db_session, V1, list(ids.values()))
    models = _models(db_session, V2)
    fixed, still = ids["segmentation"], ids["classification"]
    _predict(db_session, models, fixed, prediction())
    broken = prediction()
    PIPELINE_FAULTS["CLASSIFICATION"](broken)
    _predict(db_session, models, still, broken)
    round_1 = Round(number=1, status=RoundStatus.CLOSED, strategy="entropy", budget=5, model_version="r1-x",
                    models_before=dict(sorted(parse_model_version(V1).items())),
                    models_after=parse_model_version(V2))
    db_session.add(round_1)
    db_session.flush()
    _result(db_session, fixed, V2, correct=True, round_id=round_1.id)
    _result(db_session, still, V2, correct=False, round_id=round_1.id)
    db_session.flush()
    report = attribute_problems(db_session, V2, [fixed, still])
    db_session.commit()
    assert dict(report.outcomes) == {"CORRECT": 1, "CLASSIFICATION": 1}
    rows = db_session.execute(text(
        "SELECT round, category, before_version, after_version, n_before, share_before, n_after, share_after, delta "
        "FROM error_round_comparison ORDER BY category")).all()
    half = Decimal("0.5000")
    assert rows == [
        (1, "CLASSIFICATION", V1, V2, 1, half, 1, half, Decimal("0.0000")),
        (1, "CORRECT", V1, V2, 0, Decimal("0.0000"), 1, half, half),
        (1, "SEGMENTATION", V1, V2, 1, half, 0, Decimal("0.0000"), -half),
    ]
    by_round = db_session.execute(text(
        "SELECT round, category, n FROM error_stats WHERE model_version = :v ORDER BY category"), {"v": V2}).all()
    assert by_round == [(1, "CLASSIFICATION", 1), (1, "CORRECT", 1)]


def test_attribute_job_kind_lists_evaluated_problems_and_fails_the_rest(db_session) -> None:
    from workers.kinds import get_kind

    ids = seed(db_session)
    kind = get_kind("attribute")
    assert kind.queue == "cpu"
    keys = kind.list_items(db_session, {"model_version": V1, "dataset": "gsm8k"})
    assert keys == [str(ids[name]) for name, (dataset, outcome) in CASES.items() if dataset == "gsm8k" and outcome]
    failed = kind.process(db_session, {"model_version": V1}, [*keys, str(ids["not_evaluated"])])
    db_session.commit()
    assert list(failed) == [str(ids["not_evaluated"])]
    assert db_session.scalar(select(func.count()).select_from(Attribution)) == len(keys)


def test_cli_attribute_and_errors(db_session) -> None:
    ids = seed(db_session)
    runner = CliRunner()
    done = runner.invoke(app, ["attribute", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.strip().splitlines()[-1])["attributed"] == len(CASES) - 1
    shown = runner.invoke(app, ["errors", "--model-version", V1, "--by", "dataset", "--examples", "1", "--json"])
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    assert [g["group"] for g in figures["groups"]] == [{"dataset": "gsm8k", "split": "test"}, {"dataset": "math", "split": "test"}]
    assert all(abs(sum(r["share"] for r in g["rows"]) - 1) < 1e-3 for g in figures["groups"])
    example = figures["examples"]["CLASSIFICATION"][0]
    assert (example["problem_id"], example["why"]) == (ids["classification"], "C2 op step 1: predicted 'MUL' vs reference 'DIV'")
    assert "CORRECT" not in figures["examples"]
    table = runner.invoke(app, ["errors", "--by", "specialist", "--examples", "0"])
    assert table.exit_code == 0 and "executor" in table.stdout and "teacher" in table.stdout
    bad = runner.invoke(app, ["errors", "--by", "week"])
    assert bad.exit_code == 2 and "--by must be one of dataset, level, specialist, round" in bad.output
    assert "Traceback" not in bad.output


def test_cli_errors_without_attributions_is_one_line(db_session) -> None:
    result = CliRunner().invoke(app, ["errors"])
    assert result.exit_code == 1
    assert "no attributions yet" in result.output and "Traceback" not in result.output


def test_migration_0003_downgrades_to_0002_and_back() -> None:
    name = f"mycelium_attr_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    engine = create_engine(url)
    views = "SELECT viewname FROM pg_views WHERE viewname LIKE 'error%' ORDER BY viewname"
    try:
        upgrade(url)
        with engine.connect() as conn:
            assert [v for (v,) in conn.execute(text(views))] == [
                "error_by_dataset", "error_by_specialist", "error_round_comparison", "error_stats"]
        downgrade(url, "0002")
        with engine.connect() as conn:
            assert [v for (v,) in conn.execute(text(views))] == ["error_stats"]
            definition = conn.execute(text("SELECT pg_get_viewdef('error_stats')")).scalar()
            assert "NO_REFERENCE" not in definition and "outcome" not in definition
        upgrade(url)
        with engine.connect() as conn:
            assert len(conn.execute(text(views)).all()) == 4
    finally:
        engine.dispose()
        drop_database(name)


def test_readme_queries_run_and_answer(db_session) -> None:
    """The three queries of the README's "Error attribution" section, on the seeded rows."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Error attribution", 1)[1].split("\n## ", 1)[0]
    sql = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    # The README names the bench's model version; run the same queries on the seeded one.
    queries = [re.sub(r"model_version = '[^']+'", f"model_version = '{V1}'", q.strip())
               for q in sql.split(";") if q.strip()]
    assert len(queries) == 3
    ids = seed(db_session)
    attribute_problems(db_session, V1, list(ids.values()))
    db_session.commit()
    categories = db_session.execute(text(queries[0])).all()
    assert categories[0][:2] == ("EXECUTION", 2) and len(categories) == 10
    specialists = db_session.execute(text(queries[1])).all()
    assert {row[0] for row in specialists[:2]} == {"executor", "teacher"}
    assert db_session.execute(text(queries[2])).all() == []  # no round yet
