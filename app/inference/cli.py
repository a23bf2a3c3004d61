"""``mycelium solve`` and ``mycelium evaluate``: thin shells over ``app.inference`` and ``app.evaluation``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from app.errors import UserError

console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[Optional[str], typer.Option(
    "--model-version", help="Pipeline version, e.g. C1v1.C2v1.C3v1.C4v1.C5v1.C6v1 (default: the latest version of each).")]
ThetaOption = Annotated[float, typer.Option(help="θ: collapse a decision to its top choice when p ≥ θ.")]
TopKOption = Annotated[int, typer.Option("--top-k", help="Choices kept per decision below θ.")]
PathsOption = Annotated[int, typer.Option("--max-paths", help="Beam width / cap on candidate programs.")]


def load_specialists_or_fail(session, model_version: str | None):
    """The trained specialists (``training.specialists``), or a one-line error."""
    try:
        from training.specialists import load_specialists
    except ImportError as error:
        raise UserError(f"the trained specialists cannot be loaded ({error}); train them with `mycelium train`") from None
    try:
        from app.inference.store import specialists_part, with_selector

        return with_selector(load_specialists(session, specialists_part(model_version)), model_version)
    except UserError:
        raise
    except (LookupError, ValueError, FileNotFoundError) as error:
        raise UserError(f"cannot load specialists {model_version or '(latest)'}: {error}") from None


def _operand_description(operand: dict[str, Any], label: dict[str, Any] | None, text: str,
                         results: dict[int, str]) -> str:
    if operand["kind"] == "step":
        return f"{results.get(operand['ref'], '?')} (step {operand['ref']})"
    if operand["kind"] == "constant":
        return f"{operand['value']} (constant)"
    span = text[operand["start"]:operand["end"]]
    reading = (label or {}).get("reading", "literal")
    how = "" if reading == "literal" else f", read as {'1/x' if reading == 'reciprocal' else 'x/100'}"
    return f'{operand["value"]} ("{span}", chars {operand["start"]}–{operand["end"]}{how})'


def readable_steps(text: str, program: dict[str, Any], c3: dict[str, Any] | None) -> list[str]:
    """One line per step: the op, its result and where each operand came from in the text."""
    labels = {step["step"]: step["operands"] for step in (c3 or {}).get("steps", [])}
    results = {step["id"]: step["result"] for step in program["steps"]}
    lines = []
    for step in program["steps"]:
        own = labels.get(step["id"], [])
        parts = [_operand_description(operand, own[i] if i < len(own) else None, text, results)
                 for i, operand in enumerate(step["operands"])]
        answer = "  ← answer" if step["id"] == program.get("answer_step") else ""
        lines.append(f"{step['id']}. {step['text']}   [{step['op']}: {'; '.join(parts)}]{answer}")
    return lines


def solve_command(
    text: Annotated[str, typer.Argument(help="The problem text.")],
    model_version: ModelOption = None,
    theta: ThetaOption = 0.85,
    top_k: TopKOption = 3,
    max_paths: PathsOption = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer one problem with the trained specialists (gold-blind search; nothing is stored)."""
    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope
    from app.inference.search import SearchConfig
    from app.inference.solve import solve

    ensure_schema()
    config = SearchConfig(theta=theta, top_k=top_k, max_paths=max_paths)
    with session_scope() as session:
        specialists = load_specialists_or_fail(session, model_version)
    (solution,) = solve([text], specialists, config)
    if as_json:
        print(json.dumps({
            "answer": solution.answer, "probability": solution.probability, "program": solution.program,
            "steps": readable_steps(text, solution.program, solution.predictions.get("C3")) if solution.program else [],
            "paths_explored": solution.paths_explored, "disagreement": solution.disagreement,
            "candidates": solution.candidates, "no_answer_reason": solution.no_answer_reason,
            "model_version": solution.model_version, "ms": round(solution.ms, 2),
        }))
        return
    if solution.answer is None:
        console.print(f"[yellow]no answer[/yellow]: {solution.no_answer_reason} "
                      f"({solution.paths_explored} paths explored, models {solution.model_version})")
        raise typer.Exit(1)
    console.print(f"[bold]answer: {solution.answer}[/bold]  (p = {solution.probability:.3f}, "
                  f"{solution.paths_explored} paths explored"
                  f"{', candidates disagree' if solution.disagreement else ''})")
    for line in readable_steps(text, solution.program, solution.predictions.get("C3")):
        console.print("  " + line, soft_wrap=True, markup=False)
    others = ", ".join(f"{c['answer']} ({c['probability']:.3f})" for c in solution.candidates[1:6])
    if others:
        console.print(f"  other candidates: {others}", markup=False)
    console.print(f"  models {solution.model_version}, {solution.ms:.0f} ms", style="dim")


def evaluate_command(
    file: Annotated[Optional[Path], typer.Argument(exists=True, dir_okay=False,
                                                   help="JSONL file; its problems are ingested as split test when not stored.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="gsm8k or math.")] = "gsm8k",
    split: Annotated[Optional[str], typer.Option(help="train / dev / test (without FILE).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many problems (in id order).")] = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Ignore stored answers: infer again.")] = False,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Write one JSON line per problem here.")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Submit an `evaluate` job on the cpu queue instead.")] = False,
    model_version: ModelOption = None,
    theta: ThetaOption = 0.85,
    top_k: TopKOption = 3,
    max_paths: PathsOption = 100,
    batch_size: Annotated[int, typer.Option(help="Problems per specialists' pass.")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line of figures.")] = False,
) -> None:
    """Answer held-out problems gold-blind, store the answers, then compare them with gold.

    Refuses (nothing written) problems a training snapshot of the models in use contained.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from app.db.schema_check import ensure_schema
    from app.db.session import session_scope
    from app.evaluation import check_contamination, evaluate, file_problem_ids, split_problem_ids, write_predictions
    from app.inference.search import SearchConfig
    from app.inference.store import resolve_models

    if (file is None) == (split is None):
        raise UserError("give either FILE or --split (not both)", exit_code=2)
    ensure_schema()
    config = SearchConfig(theta=theta, top_k=top_k, max_paths=max_paths)
    with session_scope() as session:
        specialists = load_specialists_or_fail(session, model_version)
        version = specialists.model_version
        models = resolve_models(session, version)
        if file is not None:
            problem_ids, ingested = file_problem_ids(session, file, dataset, write=True, guard=(models, version))
            session.commit()
        else:
            problem_ids, ingested = split_problem_ids(session, dataset, split, limit), 0
        if limit:
            problem_ids = problem_ids[:limit]
        check_contamination(session, models, problem_ids, version)
        if queue:
            from app.cli import submit_and_report

            params = {"model_version": version, "recompute": recompute, "theta": theta, "top_k": top_k,
                      "max_paths": max_paths, "batch_size": batch_size}
            submit_and_report("evaluate", params, problem_ids)
            return
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
            task = bar.add_task(f"evaluating {version}", total=len(problem_ids))
            report, rows = evaluate(session, specialists, problem_ids, recompute=recompute, config=config,
                                    batch_size=batch_size, progress=lambda n: bar.advance(task, n),
                                    dataset=dataset, split=split or "test", ingested=ingested,
                                    theta=theta, top_k=top_k)
    if predictions is not None:
        write_predictions(predictions, rows)
    if as_json:
        print(json.dumps(report))
        return
    console.print(
        f"[bold]{dataset} {split or file}[/bold]: accuracy {report['accuracy']:.1%} of n = {report['n']} "
        f"(correct in beam {report['correct_in_beam']:.1%}; no answer {report['no_answer']}); "
        f"median {report['ms_per_problem']} ms/problem; models {version}")
