"""``mycelium round …``, ``mycelium review …`` and ``mycelium labelstudio …`` (typer sub-apps).

Registered by ``app/cli.py``::

    app.add_typer(round_app, name="round")
    app.add_typer(review_app, name="review")
    app.add_typer(labelstudio_app, name="labelstudio")
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

round_app = typer.Typer(help="Active-learning rounds: select a batch, track it, close it.", no_args_is_help=True)
review_app = typer.Typer(help="Human review in Label Studio: push tasks, pull annotations.", no_args_is_help=True)
labelstudio_app = typer.Typer(help="Install and run a local Label Studio server.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
RoundOption = Annotated[int | None, typer.Option("--round", help="Round number (default: the open or latest).")]


def _ensure_schema() -> None:
    from app.db.schema_check import ensure_schema

    ensure_schema()


def _fail(message: str, code: int = 1) -> typer.Exit:
    from app.cli_support import print_error

    print_error(message)
    return typer.Exit(code)


# Round statistics in this order (then any other key, alphabetically): the same order every time,
# whether the figures come fresh or from the stored JSONB (which reorders keys).
STATS_ORDER = ("selected", "sent", "annotated", "imported", "withdrawn", "annotation_versions", "human_labels",
               "withdrawals")


def _ordered_stats(stats: dict[str, Any]) -> dict[str, Any]:
    known = [key for key in STATS_ORDER if key in stats]
    return {key: stats[key] for key in [*known, *sorted(set(stats) - set(known))]}


def _iso(value: Any) -> str:
    """ISO 8601 to the second (``2026-01-02T03:04:05+00:00``), or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.isoformat(timespec="seconds")


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    summary = {**summary, "stats": _ordered_stats(summary.get("stats") or {})}
    if as_json:
        print(json.dumps(summary, default=str))
        return
    table = Table(title=f"round {summary['number']} ({summary['status']})", title_justify="left", show_header=False)
    for key in ("strategy", "budget", "model_version"):
        table.add_row(key, str(summary.get(key)))
    for key in ("started_at", "closed_at"):
        table.add_row(key, _iso(summary.get(key)))
    for key, value in summary["stats"].items():
        table.add_row(key, str(value))
    table.add_row("models_before", json.dumps(summary.get("models_before") or {}, sort_keys=True))
    table.add_row("models_after", json.dumps(summary.get("models_after") or {}, sort_keys=True))
    for line in _retrain_lines(summary.get("retrain")):
        table.add_row(*line)
    console.print(table)


def _retrain_lines(retrain: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The retraining record as table rows: state, jobs, accuracy before → after, effort, stopping."""
    if not retrain:
        return []

    def acc(side: str, split: str) -> str:
        value = ((retrain.get(side) or {}).get("splits") or {}).get(split) or {}
        return "—" if value.get("accuracy") is None else f"{value['accuracy']:.3f} (n={value['n']})"

    rows = [("retrain", f"{retrain.get('state')} (snapshot {retrain.get('snapshot_id')}, jobs "
                        f"{json.dumps(retrain.get('jobs') or {}, sort_keys=True)})")]
    for split in ("dev", "test"):
        rows.append((f"{split} accuracy", f"{acc('before', split)} → {acc('after', split)}"))
    effort = retrain.get("effort") or {}
    rows.append(("labels added", f"{effort.get('labels_added')} on {effort.get('problems_labelled')} problems; "
                                 f"{effort.get('corrections_flagged')} flagged corrections"))
    rows.append(("annotator time", f"{effort.get('annotator_seconds')} s ({effort.get('seconds_per_task')} s/task)"))
    stopping = retrain.get("stopping")
    if stopping:
        rows.append(("stopping rule", f"gain {stopping.get('gain')} (min {stopping.get('min_gain')}, "
                                      f"patience {stopping.get('patience')}): {stopping.get('advice')}"))
    return rows


def _label_studio_failure(error: Exception) -> typer.Exit:
    """One line for an SDK / HTTP failure (no headers, no traceback); re-raise anything else."""
    from app.config import get_settings
    from labeling.client import explain_failure

    failure = explain_failure(error, get_settings().label_studio_url)
    if failure is None:
        raise error
    return _fail(str(failure), failure.exit_code)


# --------------------------------------------------------------------------- round


@round_app.command("start")
def round_start(
    budget: Annotated[int | None, typer.Option(help="Problems to select (default 50).")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="composite, least_confidence, margin, entropy, disagreement, execution or random."),
    ] = None,
    split: Annotated[list[str], typer.Option("--split", help="Pool split(s); repeatable.")] = ["train"],  # noqa: B006
    max_similarity: Annotated[float, typer.Option(help="Near-duplicate threshold (MiniLM cosine similarity).")] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of the random strategy.")] = 0,
    infer: Annotated[bool, typer.Option("--infer/--no-infer", help="Run the newest specialists on the pool first.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Open a round and record its selection (returns the open round if one is open)."""
    from app.db.models import Split
    from app.db.session import session_scope
    from labeling.rounds import RoundError, round_summary, start_round

    _ensure_schema()
    try:
        if infer:
            from labeling.candidates import pool_problem_ids
            from labeling.demo import infer_pool
            from labeling.rounds import open_round

            with session_scope() as session:
                if open_round(session) is None:
                    infer_pool(session, pool_problem_ids(session, [Split(s) for s in split]))
        with session_scope() as session:
            started = start_round(
                session,
                budget=budget,
                strategy=strategy,
                splits=[Split(s) for s in split],
                max_similarity=max_similarity,
                seed=seed,
            )
            summary = round_summary(session, started.round) | {"created": started.created}
    except (RoundError, ValueError) as error:
        raise _fail(str(error), 2) from None
    _print_summary(summary, as_json)


@round_app.command("status")
def round_status(number: RoundOption = None, as_json: JsonOption = False) -> None:
    """What a round selected, sent, got annotated and imported."""
    from app.db.session import session_scope
    from labeling.retrain import advance, queued_submit
    from labeling.rounds import RoundError, get_round, round_summary

    _ensure_schema()
    try:
        with session_scope() as session:
            round_ = get_round(session, number)
            advance(session, round_, queued_submit)  # move a closed round's retraining on
            summary = round_summary(session, round_)
    except RoundError as error:
        raise _fail(str(error), 2) from None
    _print_summary(summary, as_json)


@round_app.command("close")
def round_close(
    number: RoundOption = None,
    force: Annotated[bool, typer.Option("--force", help="Close even with tasks not yet reviewed.")] = False,
    retrain: Annotated[
        bool | None,
        typer.Option("--retrain/--no-retrain", help="Snapshot labels and retrain (default: when specialists exist)."),
    ] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Train, evaluate, attribute here (no workers).")] = False,
    backbone: Annotated[str | None, typer.Option(help="Encoder directory (default: MiniLM).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs per specialist.")] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Problems per evaluated split (dev, test).")] = None,
    min_gain: Annotated[float, typer.Option(help="Stopping rule: dev accuracy gain that counts.")] = 0.01,
    patience: Annotated[int, typer.Option(help="Stopping rule: rounds below --min-gain before stop.")] = 2,
    as_json: JsonOption = False,
) -> None:
    """Close the open round; snapshot the labels, enqueue `train` (gpu), then `evaluate` +
    `attribute` (cpu); models_before/after with dev/test accuracy and the stopping rule are
    recorded (`mycelium round status` moves a queued retraining on).

    Refuses while selected problems are not reviewed yet (imported or withdrawn), unless --force.
    """
    from app.db.models import RoundStatus
    from app.db.session import session_scope
    from labeling.rounds import RoundError, close_round, get_round, round_stats, round_summary

    _ensure_schema()
    try:
        with session_scope() as session:
            round_ = get_round(session, number)
            if round_.status != RoundStatus.CLOSED and not force:
                stats = round_stats(session, round_)
                left = max(0, stats["selected"] - stats["imported"] - stats["withdrawn"])
                if left:
                    raise _fail(
                        f"round {round_.number}: {left} of {stats['selected']} selected problems are not reviewed yet "
                        f"({stats['sent']} sent to Label Studio); pull their annotations with `mycelium review pull`, "
                        "or close anyway with `mycelium round close --force`",
                        2,
                    )
            if retrain is None:
                from app.db.models import SpecialistModel
                from sqlalchemy import select

                retrain = session.scalar(select(SpecialistModel.id).limit(1)) is not None
            if not retrain:
                summary = round_summary(session, close_round(session, number))
        if retrain:
            from labeling.retrain import RetrainConfig, close_and_retrain

            config = RetrainConfig(backbone=backbone, train={"epochs": epochs} if epochs else None,
                                   eval_limit=eval_limit, min_gain=min_gain, patience=patience)
            summary = close_and_retrain(number, config, inline=inline)
    except RoundError as error:
        raise _fail(str(error), 2) from None
    _print_summary(summary, as_json)


# --------------------------------------------------------------------------- review


@review_app.command("push")
def review_push(
    number: RoundOption = None,
    project: Annotated[str, typer.Option(help="Label Studio project title.")] = "Mycelium review",
    webhook_url: Annotated[
        str | None, typer.Option(help="Receiver URL to register, e.g. http://127.0.0.1:8765/webhooks/label-studio")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Push the round's selection to Label Studio as pre-annotated tasks (idempotent)."""
    from app.config import get_settings
    from app.db.session import session_scope
    from labeling.client import LabelStudioError, connect_from_settings
    from labeling.push import push_round
    from labeling.rounds import RoundError, get_round

    _ensure_schema()
    settings = get_settings()
    if webhook_url and not settings.label_studio_webhook_secret:
        raise _fail("--webhook-url needs LABEL_STUDIO_WEBHOOK_SECRET (the receiver checks it)", 2)
    try:
        client = connect_from_settings()
        with session_scope() as session:
            result = push_round(
                session,
                client,
                get_round(session, number),
                project_title=project,
                webhook_url=webhook_url,
                webhook_secret=settings.label_studio_webhook_secret,
            )
    except (RoundError, LabelStudioError) as error:
        raise _fail(str(error), 2) from None
    except Exception as error:  # noqa: BLE001 - SDK / HTTP failures become one line
        raise _label_studio_failure(error) from None
    summary = result.as_dict()
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(
            f"project {result.project_id}: {result.created} task(s) created, {result.adopted} adopted, "
            f"{result.already_pushed} already pushed"
        )


@review_app.command("pull")
def review_pull(
    number: RoundOption = None,
    all_rounds: Annotated[bool, typer.Option("--all", help="Every round's tasks.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reconcile: import annotations (and deletions) that webhooks missed."""
    from app.db.session import session_scope
    from labeling.client import LabelStudioError, connect_from_settings
    from labeling.importer import reconcile
    from labeling.rounds import RoundError, get_round, refresh_stats

    _ensure_schema()
    try:
        client = connect_from_settings()
        with session_scope() as session:
            round_ = None if all_rounds else get_round(session, number)
            report = reconcile(session, client, None if round_ is None else round_.number)
            if round_ is not None:
                refresh_stats(session, round_)
    except (RoundError, LabelStudioError) as error:
        raise _fail(str(error), 2) from None
    except Exception as error:  # noqa: BLE001 - SDK / HTTP failures become one line
        raise _label_studio_failure(error) from None
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    table = Table(title=f"review pull: {report.tasks_checked} task(s) checked", title_justify="left")
    table.add_column("outcome")
    table.add_column("tasks", justify="right")
    for outcome, count in sorted(dict(report.outcomes).items()):
        table.add_row(str(outcome), str(count))
    if not report.outcomes:
        table.add_row("nothing new", "0")
    console.print(table)


@review_app.command("status")
def review_status(number: RoundOption = None, as_json: JsonOption = False) -> None:
    """Review tasks of a round, most uncertain first, with their annotation state."""
    from sqlalchemy import func, select

    from app.db.models import Annotation
    from app.db.session import session_scope
    from labeling.push import review_tasks_of
    from labeling.rounds import RoundError, get_round, latest_verdicts

    _ensure_schema()
    try:
        with session_scope() as session:
            round_ = get_round(session, number)
            verdicts = latest_verdicts(session, round_)
            versions = dict(
                session.execute(
                    select(Annotation.review_task_id, func.count()).group_by(Annotation.review_task_id)
                ).all()
            )
            rows = [
                {
                    "problem_id": task.problem_id,
                    "ls_project_id": task.ls_project_id,
                    "ls_task_id": task.ls_task_id,
                    "task_score": round(task.task_score, 4),
                    "status": str(task.status),
                    "annotation_versions": int(versions.get(task.id, 0)),
                    "verdict": verdicts.get(task.id),
                }
                for task in review_tasks_of(session, round_)
            ]
            number_ = round_.number
    except RoundError as error:
        raise _fail(str(error), 2) from None
    if as_json:
        print(json.dumps({"round": number_, "tasks": rows}))
        return
    table = Table(title=f"round {number_} review tasks", title_justify="left")
    for column in ("problem_id", "ls_task_id", "task_score", "status", "annotation_versions", "verdict"):
        table.add_column(column)
    for row in rows:
        verdict = row["verdict"]
        shown = "" if verdict is None else (
            f"reproduces gold ({verdict.get('answer')})" if verdict.get("correct")
            else f"[red]FLAGGED {verdict.get('status')}[/red] (answer {verdict.get('answer')}, gold "
            f"{verdict.get('gold')}; not trained on)"
        )
        table.add_row(
            *(str(row[c]) for c in ("problem_id", "ls_task_id", "task_score", "status", "annotation_versions")),
            shown,
        )
    console.print(table)


@review_app.command("serve")
def review_serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    reconcile_every: Annotated[float, typer.Option(help="Seconds between reconciliation pulls (0: off).")] = 300.0,
) -> None:
    """Run the Label Studio webhook receiver (and periodic reconciliation)."""
    from app.config import get_settings
    from labeling.webhook import serve

    _ensure_schema()
    secret = get_settings().label_studio_webhook_secret
    if not secret:
        raise _fail("set LABEL_STUDIO_WEBHOOK_SECRET: the receiver only accepts requests that carry it", 2)
    serve(host, port, secret, reconcile_every)


# --------------------------------------------------------------------------- labelstudio


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@labelstudio_app.command("install")
def labelstudio_install() -> None:
    """Create the cached Label Studio venv and its pre-migrated data-dir template."""
    from labeling.server import LabelStudioServerError, ensure_installed

    started = time.monotonic()
    try:
        venv, template, version = ensure_installed()
    except LabelStudioServerError as error:
        raise _fail(str(error)) from None
    console.print(
        f"Label Studio {version}\n  venv: {venv}\n  template: {template}\n  ({time.monotonic() - started:.0f} s)"
    )


@labelstudio_app.command("start")
def labelstudio_start(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Label Studio data directory, created from the template (default: MYCELIUM_HOME/label-studio)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Legacy API token of the first user (default: LABEL_STUDIO_API_KEY or new).")
    ] = None,
    username: Annotated[str, typer.Option(help="First user's e-mail.")] = "admin@mycelium.local",
    password: Annotated[str | None, typer.Option(help="First user's password (default: generated).")] = None,
) -> None:
    """Run Label Studio on loopback in the foreground until Ctrl-C."""
    from app.config import get_settings
    from labeling.server import (
        DATABASE_FILE,
        TOKEN_FILE,
        LabelStudioServerError,
        read_secret,
        start,
        store_credentials,
    )

    data_dir = (data_dir or get_settings().mycelium_home / "label-studio").expanduser()
    token = token or read_secret(data_dir / TOKEN_FILE) or get_settings().label_studio_api_key or secrets.token_hex(20)
    fresh = not (data_dir / DATABASE_FILE).exists()
    try:
        server = start(port, data_dir, token, username=username, password=password)
    except LabelStudioServerError as error:
        raise _fail(str(error)) from None
    notice = store_credentials(server, fresh=fresh, password_given=password is not None)
    console.print(notice, soft_wrap=True, markup=False)  # where the secrets are, not the secrets
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        while server.is_running():
            time.sleep(1)
        raise _fail(f"Label Studio exited ({server.process.returncode}); log:\n{server.log_tail()}")
    except KeyboardInterrupt:
        print("stopping Label Studio", file=sys.stderr)
    finally:
        server.stop()
