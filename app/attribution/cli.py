"""``mycelium attribute`` and ``mycelium errors``: thin shells over :mod:`.store` and :mod:`.report`."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from app.errors import UserError

console = Console()
err_console = Console(stderr=True)


def _model_version(session, model_version: str | None, table) -> str:
    from app.attribution.store import latest_model_version

    version = model_version or latest_model_version(session, table)
    if version is None:
        what = "inference results" if table.__name__ == "InferenceResult" else "attributions"
        raise UserError(f"no {what} yet: run `mycelium evaluate` first")
    return version


def attribute(
    model_version: Annotated[Optional[str], typer.Option("--model-version", help="Pipeline version (C1v1.C2v1…) [default: the newest evaluated].")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Only this split.")] = None,
    round_number: Annotated[Optional[int], typer.Option("--round", help="Record under this round number [default: the inference result's round].")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Submit an `attribute` job to the cpu workers instead of running inline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Attribute every evaluated problem of a model version to the first failing stage (design §6):
    teacher, C1 regions, C2 ops, C3/C4 operands, C5 edges, selection, execution. Idempotent: one
    row per problem × model version × round, updated in place."""
    from sqlalchemy import select

    from app.attribution.store import attribute_problems, evaluated_problem_ids
    from app.db.models import Dataset, InferenceResult, Problem, Round, Split
    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        version = _model_version(session, model_version, InferenceResult)
        round_id = None
        if round_number is not None:
            round_id = session.scalar(select(Round.id).where(Round.number == round_number))
            if round_id is None:
                raise UserError(f"no round {round_number}; list rounds with `mycelium round status`")
        query = select(Problem.id).join(Dataset)
        if dataset:
            query = query.where(Dataset.name == dataset)
        if split:
            query = query.where(Problem.split == Split(split))
        ids = evaluated_problem_ids(session, version, list(session.scalars(query)) if dataset or split else None)
        if not ids:
            raise UserError(f"no evaluated problems under model version {version!r}"
                            f"{' in ' + '/'.join(filter(None, (dataset, split))) if dataset or split else ''}")
        if not queue:
            report = attribute_problems(session, version, ids, round_id=round_id)
    if queue:
        from workers.submit import submit_job

        params = {"model_version": version, "dataset": dataset, "split": split, "round_id": round_id}
        job = submit_job("attribute", params, [str(i) for i in ids])
        state = "submitted" if job.created else f"already exists ({job.status});"
        console.print(f"attribute job {job.id} {state} {job.total} problems; `mycelium jobs watch {job.id}`")
        return
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    console.print(f"attributed {report.attributed} problems under {version} ({report.created} new rows): "
                  + ", ".join(f"{k}={v}" for k, v in sorted(report.outcomes.items())))


def errors(
    model_version: Annotated[Optional[str], typer.Option("--model-version", help="Pipeline version [default: the newest attributed].")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Group by dataset, level, specialist or round.")] = None,
    examples: Annotated[int, typer.Option("--examples", help="Example problems per category (predicted vs reference).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Where the pipeline loses accuracy: attribution categories with counts and shares (per group
    with --by), and a few example problems per category saying what failed."""
    from app.attribution.report import BY_CHOICES, error_examples, error_groups
    from app.db.models import Attribution
    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope

    if by is not None and by not in BY_CHOICES:
        raise UserError(f"--by must be one of {', '.join(BY_CHOICES)}, not {by!r}", exit_code=2)
    ensure_schema()
    with session_scope() as session:
        version = _model_version(session, model_version, Attribution)
        groups = error_groups(session, version, by)
        if not groups:
            raise UserError(f"no attributions under model version {version!r}: run `mycelium attribute --model-version {version}`")
        shown = error_examples(session, version, examples)
    if as_json:
        print(json.dumps({"model_version": version, "by": by, "groups": groups, "examples": shown}, default=str))
        return
    label = "specialist" if by == "specialist" else "category"
    console.print(f"[bold]model version {version}[/bold]", soft_wrap=True)
    for group in groups:
        title = ", ".join(f"{k}={v}" for k, v in group["group"].items()) or "all evaluated problems"
        table = Table(title=f"{title} (n={group['total']})", title_justify="left", min_width=40)
        table.add_column(label)
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        for row in group["rows"]:
            table.add_row(str(row[label]), str(row["n"]), f"{row['share']:.1%}")
        console.print(table)
    for outcome, items in shown.items():
        console.print(f"\n[bold]{outcome}[/bold]")
        for item in items:
            console.print(f"  problem {item['problem_id']} ({item['dataset']} {item['external_id']}): {item['why']}",
                          soft_wrap=True, markup=False, highlight=False)
