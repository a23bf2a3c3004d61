"""Command line of the job system: ``mycelium jobs …`` (``jobs_app``) and ``mycelium worker`` (``worker``).

``app.cli`` registers them: ``app.add_typer(jobs_app, name="jobs")`` and ``app.command()(worker)``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from app.db.models import JobStatus
from app.db.session import session_scope
from workers import jobs
from workers.kinds import QUEUES
from workers.sql_broker import is_sql_transport

jobs_app = typer.Typer(help="Queued jobs: list, show, watch, cancel, resume.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

IO_THREADS = 8


@dataclass(frozen=True)
class WorkerDefaults:
    pool: str
    concurrency: int


def worker_defaults(queues: list[str], cpu_count: int) -> WorkerDefaults:
    """Pool and concurrency for a worker of ``queues``.

    gpu: one process (one worker per GPU; pin it with CUDA_VISIBLE_DEVICES), prefork so a crashed
    CUDA process is replaced; cpu: one process per core; io only: threads.
    """
    if "gpu" in queues:
        return WorkerDefaults(pool="prefork", concurrency=1)
    if "cpu" in queues:
        return WorkerDefaults(pool="prefork", concurrency=max(1, cpu_count))
    return WorkerDefaults(pool="threads", concurrency=IO_THREADS)


def parse_queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if not names or unknown:
        raise typer.BadParameter(f"queues must be a comma-separated subset of {','.join(QUEUES)}; got {text!r}")
    return names


def worker(
    queues: Annotated[str, typer.Option("--queues", "-Q", help="Comma-separated: gpu, cpu, io.")] = "gpu,cpu,io",
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Processes (default: 1 with gpu, else one per core).")] = None,
    pool: Annotated[Optional[str], typer.Option(help="prefork, threads or solo (default: threads for io only, else prefork).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Node name (default: <queues>-<pid>@<host>).")] = None,
) -> None:
    """Start a Celery worker for the given queues (acks late, prefetch 1, resumes stalled jobs on start)."""
    from workers.celery_app import app

    names = parse_queues(queues)
    _ensure_schema()
    defaults = worker_defaults(names, os.cpu_count() or 1)
    argv = [
        "worker",
        "--queues", ",".join(names),
        "--concurrency", str(concurrency or defaults.concurrency),
        "--pool", pool or defaults.pool,
        "--loglevel", loglevel,
        "--hostname", name or f"{'+'.join(names)}-{os.getpid()}@%h",
        # No broadcast chatter: cancellation goes through the job table, and the SQL broker has no fanout.
        "--without-mingle", "--without-gossip",
    ]
    app.worker_main(argv)


def _ensure_schema() -> None:
    from app.db.schema_check import ensure_schema

    ensure_schema()


@jobs_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="Newest N jobs.")] = 20,
    status: Annotated[Optional[str], typer.Option(help="Only jobs in this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """The newest jobs with their status and progress."""
    _ensure_schema()
    with session_scope() as session:
        rows = jobs.list_jobs(session, limit=limit, status=JobStatus(status) if status else None)
        summaries = [(jobs.job_summary(job), job.created_at) for job in rows]
    if as_json:
        print(json.dumps([summary for summary, _ in summaries]))
        return
    table = Table(title="jobs", title_justify="left")
    for column, justify in (("id", "right"), ("kind", "left"), ("status", "left"), ("done/total", "right"),
                            ("created", "left"), ("error", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for summary, created_at in summaries:
        table.add_row(str(summary["id"]), summary["kind"], summary["status"], f"{summary['done']}/{summary['total']}",
                      _iso(created_at), (summary["error"] or "")[:60])
    console.print(table)


@jobs_app.command("show")
def show_command(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help='{"id", "kind", "status", "done", "total", "error"}')] = False,
) -> None:
    """One job: status, progress, items per status, the first item errors."""
    _ensure_schema()
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        if job is None:
            err_console.print(f"[red]no job {job_id}[/red]")
            raise typer.Exit(1)
        summary = jobs.job_summary(job)
        counts = jobs.item_counts(session, job_id)
        errors = jobs.item_errors(session, job_id)
        params, times = job.params, (job.created_at, job.started_at, job.finished_at)
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"[bold]job {summary['id']}[/bold] {summary['kind']} [bold]{summary['status']}[/bold] "
                  f"{summary['done']}/{summary['total']}", highlight=False)
    console.print(f"params: {json.dumps(params, sort_keys=True)}", markup=False, highlight=False)
    console.print("created {} · started {} · finished {}".format(*(_iso(t) for t in times)))
    console.print("items: " + ", ".join(f"{status}={count}" for status, count in sorted(counts.items())))
    if summary["error"]:
        console.print(f"[red]error:[/red] {summary['error']}", markup=True, highlight=False)
    for key, error in errors:
        console.print(f"  item {key}: {error.splitlines()[0] if error else ''}", markup=False, highlight=False)


@jobs_app.command("watch")
def watch_command(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
    warn_after: Annotated[float, typer.Option(help="Say so when no worker has picked the job up after this many seconds.")] = 5.0,
) -> None:
    """A progress bar until the job finishes; exits 0 if it succeeded, 1 otherwise."""
    _ensure_schema()
    summary = _poll(job_id)
    started, warned = time.monotonic(), False
    with Progress(TextColumn("job {task.fields[job_id]} {task.fields[status]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console) as bar:
        task = bar.add_task("job", total=summary["total"] or 1, job_id=job_id, status=summary["status"])
        while True:
            bar.update(task, completed=summary["done"], total=summary["total"] or 1, status=summary["status"])
            if JobStatus(summary["status"]) in jobs.FINISHED:
                break
            if not warned and time.monotonic() - started >= warn_after and summary["status"] == JobStatus.QUEUED:
                warned = True
                bar.console.print(no_worker_message(summary, time.monotonic() - started), markup=False, highlight=False)
            time.sleep(interval)
            summary = _poll(job_id)
    console.print(f"job {job_id} {summary['status']}: {summary['done']}/{summary['total']}"
                  + (f" — {summary['error']}" if summary["error"] else ""), markup=False, highlight=False)
    raise typer.Exit(0 if summary["status"] == JobStatus.SUCCEEDED else 1)


def _iso(value: datetime | None) -> str:
    """ISO 8601 to the second, or ``-``."""
    return value.isoformat(timespec="seconds") if value is not None else "-"


def queue_listeners(queue: str, timeout: float = 1.0) -> bool | None:
    """Whether some worker consumes ``queue``: asked over the broker where it can broadcast
    (Redis, RabbitMQ); None where it cannot (the SQL transport) or nobody could be asked."""
    from workers.celery_app import app

    if is_sql_transport(str(app.conf.broker_url)):
        return None
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # noqa: BLE001 - broker unreachable: we cannot tell
        return None
    return any(q.get("name") == queue for queues in replies.values() for q in queues)


def no_worker_message(summary: dict, waited: float) -> str:
    """What to tell a user whose job nobody has picked up."""
    from workers.kinds import get_kind

    queue = get_kind(summary["kind"]).queue
    start = f"start one with `mycelium worker --queues {queue}` (the job then runs; Ctrl-C stops watching, not the job)"
    if queue_listeners(queue) is False:
        return f"no worker is listening on queue `{queue}`: {start}"
    return (f"no worker has picked up job {summary['id']} in {waited:.0f} s: is one listening on queue `{queue}`? "
            f"{start}")


def _poll(job_id: int) -> dict:
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        if job is None:
            err_console.print(f"[red]no job {job_id}[/red]")
            raise typer.Exit(1)
        return jobs.job_summary(job)


@jobs_app.command("cancel")
def cancel_command(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Cancel a job: no further item starts; items in flight finish and keep their results."""
    _ensure_schema()
    try:
        with session_scope() as session:
            status = jobs.cancel_job(session, job_id)
    except LookupError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"job {job_id} {status}")


@jobs_app.command("resume")
def resume_command(
    queues: Annotated[str, typer.Option("--queues", "-Q", help="Resume jobs of these queues' kinds.")] = "gpu,cpu,io",
) -> None:
    """Send one more task to every unfinished job with unclaimed items (after workers were lost)."""
    from workers.celery_app import app
    from workers.dispatch import resume_stalled_jobs

    _ensure_schema()
    resumed = resume_stalled_jobs(app, parse_queues(queues))
    console.print(f"resumed jobs: {', '.join(map(str, resumed)) or 'none'}")
