"""Issue 16, defect 9: Label Studio secrets.

Before: ``mycelium labelstudio start`` printed the token and the password, wrote the token file
before ``chmod 600`` (world-readable for a moment, or for good if the chmod failed), and
``labeling/server.py`` had a hard-coded default password.
"""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import labeling.server as server_module
from labeling.server import (
    PASSWORD_FILE,
    TOKEN_FILE,
    LabelStudioServer,
    generate_password,
    read_secret,
    start,
    store_credentials,
    write_secret,
)

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_hard_coded_default_password() -> None:
    assert inspect.signature(start).parameters["password"].default is None
    assert not hasattr(server_module, "DEFAULT_PASSWORD")
    assert "mycelium-review" not in Path(server_module.__file__).read_text()
    assert len({generate_password() for _ in range(5)}) == 5 and len(generate_password()) >= 20


def test_secret_files_are_0600_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def watching_replace(source: str, target: str) -> None:
        seen.append(_mode(Path(source)))  # the file holding the secret, before it gets its name
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching_replace)
    old_umask = os.umask(0)  # the most permissive umask: the mode must not depend on it
    try:
        path = tmp_path / "dir" / TOKEN_FILE
        write_secret(path, "tok-123456")
        path.chmod(0o644)  # an older file left readable …
        inode = path.stat().st_ino
        write_secret(path, "tok-abcdef")  # … is replaced, never written into
    finally:
        os.umask(old_umask)
    assert seen == [0o600, 0o600]
    assert _mode(path) == 0o600 and path.stat().st_ino != inode
    assert read_secret(path) == "tok-abcdef" and read_secret(tmp_path / "missing") is None
    assert [p.name for p in path.parent.iterdir()] == [TOKEN_FILE]  # no temporary file left


def _fake_server(data_dir: Path, token: str, password: str) -> LabelStudioServer:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return LabelStudioServer(
        url="http://127.0.0.1:1", port=1, token=token, username="admin@mycelium.local", password=password,
        data_dir=data_dir, log_path=data_dir / "ls.log", version="1.23.2", process=finished,
    )


def test_server_repr_hides_the_secrets(tmp_path: Path) -> None:
    text = repr(_fake_server(tmp_path, "tok-SECRET-1", "pw-SECRET-2"))
    assert "SECRET" not in text


def test_labelstudio_start_prints_where_the_secrets_are_not_what_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import app

    calls: list[dict[str, object]] = []

    def fake_start(port: int, data_dir: Path, token: str, *, username: str, password: str | None) -> LabelStudioServer:
        calls.append({"token": token, "password": password})
        data_dir.mkdir(parents=True, exist_ok=True)
        return _fake_server(data_dir, token, password or generate_password())

    monkeypatch.setattr(server_module, "start", fake_start)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    data_dir = tmp_path / "ls"
    result = runner.invoke(app, ["labelstudio", "start", "--data-dir", str(data_dir), "--token", "tok-SECRET-1"])
    token_file, password_file = data_dir / TOKEN_FILE, data_dir / PASSWORD_FILE
    assert calls == [{"token": "tok-SECRET-1", "password": None}]  # no default password is passed
    assert "SECRET" not in result.output
    assert str(token_file) in result.stdout and str(password_file) in result.stdout
    assert read_secret(token_file) == "tok-SECRET-1" and _mode(token_file) == 0o600
    password = read_secret(password_file)
    assert password and password not in result.output and _mode(password_file) == 0o600

    again = runner.invoke(app, ["labelstudio", "start", "--data-dir", str(data_dir)])  # the saved token is reused
    assert calls[-1] == {"token": "tok-SECRET-1", "password": None}
    assert "SECRET" not in again.output and password not in again.output


def test_store_credentials_text_names_files_only(tmp_path: Path) -> None:
    server = _fake_server(tmp_path, "tok-SECRET-1", "pw-SECRET-2")
    text = store_credentials(server, fresh=True, password_given=True)
    assert "SECRET" not in text and "the one given with --password" in text
    assert not (tmp_path / PASSWORD_FILE).exists()  # a password the user chose is not written down
    assert f'export LABEL_STUDIO_API_KEY="$(cat {tmp_path / TOKEN_FILE})"' in text
