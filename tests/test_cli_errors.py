"""A new user's first mistakes: one line, a non-zero exit, no traceback unless --debug (issue 17)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import app
from app.errors import UserError, describe, redact
from tests.labeling_seed import seed_problems

runner = CliRunner()


def one_line_error(result, code: int) -> str:  # noqa: ANN001
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_describe_and_redact() -> None:
    assert describe(UserError("fix it", exit_code=3)) == ("fix it", 3)
    assert describe(ValueError("a bug")) is None
    assert redact("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"


class _Unauthorized(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"detail": "Authentication credentials were not provided."}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "sessionid=SESSION-COOKIE-SECRET; HttpOnly")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PATCH = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def unauthorized_label_studio() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture()
def label_studio_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from app.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _open_round(db_session: Session) -> None:
    seed_problems(db_session)
    db_session.commit()
    started = runner.invoke(app, ["round", "start", "--budget", "2", "--json"])
    assert started.exit_code == 0, started.output


def test_review_push_with_a_wrong_api_key_is_one_line_without_headers(
    db_session: Session, unauthorized_label_studio: str, label_studio_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    _open_round(db_session)
    monkeypatch.setenv("LABEL_STUDIO_URL", unauthorized_label_studio)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong")
    get_settings.cache_clear()
    line = one_line_error(runner.invoke(app, ["review", "push"]), 2)
    assert "rejected the API key (HTTP 401)" in line and "LABEL_STUDIO_API_KEY" in line
    assert "SESSION-COOKIE-SECRET" not in line and "headers" not in line

    # Label Studio down: one line too
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    line = one_line_error(runner.invoke(app, ["review", "push"]), 2)
    assert "cannot reach Label Studio at http://127.0.0.1:9" in line and "mycelium labelstudio start" in line


def test_round_close_says_how_many_tasks_are_left(db_session: Session) -> None:
    _open_round(db_session)
    line = one_line_error(runner.invoke(app, ["round", "close"]), 2)
    assert "2 of 2 selected problems are not reviewed yet" in line and "--force" in line
    closed = runner.invoke(app, ["round", "close", "--force", "--json"])
    assert closed.exit_code == 0 and json.loads(closed.stdout)["status"] == "closed"


def test_unmigrated_database_and_unknown_trace(db_session: Session) -> None:
    line = one_line_error(runner.invoke(app, ["show", "trace", "999999"]), 1)
    assert "mycelium show traces" in line
    listed = runner.invoke(app, ["show", "traces", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_missing_teacher_names_the_fixes(db_session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.teacher.loading as loading

    def not_cached(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them")

    seed_problems(db_session)
    db_session.commit()
    monkeypatch.setattr(loading, "load_teacher", not_cached)
    result = runner.invoke(app, ["extract", "--teacher", "nobody/no-such-model", "--limit", "1"])
    line = one_line_error(result, 1)
    assert "'nobody/no-such-model' is not available locally" in line
    assert "--allow-download" in line and "local model directory" in line and "mycelium demo" in line
    debug = runner.invoke(app, ["--debug", "extract", "--teacher", "nobody/no-such-model", "--limit", "1"])
    assert isinstance(debug.exception, UserError)  # --debug lets the exception (and its traceback) through


def test_jobs_watch_says_no_worker_is_listening(db_session: Session) -> None:
    from workers.cli import no_worker_message

    message = no_worker_message({"id": 7, "kind": "extract", "status": "queued"}, 5.2)
    assert "queue `gpu`" in message and "mycelium worker --queues gpu" in message


def test_help_has_no_bool_metavar_and_documents_arguments() -> None:
    for command in (["--help"], ["jobs", "show", "--help"], ["show", "trace", "--help"], ["db", "upgrade", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0
        assert "<bool>" not in result.output, command
    assert "Trace id" in runner.invoke(app, ["show", "trace", "--help"]).output
    assert "Alembic revision" in runner.invoke(app, ["db", "upgrade", "--help"]).output
