"""The Label Studio server shell: cached template, token checks, port hijack detection, CI policy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labeling.server import (
    DATABASE_FILE,
    READY_MARKER,
    LabelStudioServer,
    LabelStudioServerError,
    ensure_template,
    installed_version,
    probe,
    start,
    venv_dir,
)
from tests.labelstudio_fixtures import label_studio, unavailable  # noqa: F401

pytestmark = pytest.mark.labelstudio


def _processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is ``directory`` (Label Studio runs in its data dir)."""
    target = str(directory.resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_running_server_uses_the_cached_template(label_studio: LabelStudioServer) -> None:  # noqa: F811
    assert label_studio.version.startswith("1.23.")
    assert installed_version(venv_dir()) == label_studio.version
    template = ensure_template(venv_dir(), label_studio.version)
    assert (template / READY_MARKER).read_text().strip() == label_studio.version
    assert (template / DATABASE_FILE).stat().st_size > 100_000  # migrated, not empty
    assert (label_studio.data_dir / DATABASE_FILE).exists()
    assert label_studio.startup_seconds < 60
    assert probe(label_studio.url, label_studio.token) == "ready"
    assert probe(label_studio.url, "not-the-token") == "unauthorised"


def test_short_token_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(LabelStudioServerError, match="longer than 5 characters"):
        start(1, tmp_path / "data", "abc")
    assert not (tmp_path / "data").exists()


def test_a_busy_port_is_detected_not_silently_moved(
    label_studio: LabelStudioServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Label Studio either exits ("port is already in use") or moves to the next port, where the
    # token check against the requested port notices that another server answers.
    began = time.monotonic()
    with pytest.raises(LabelStudioServerError, match="refuses the token|port is already in use"):
        start(label_studio.port, tmp_path / "data", "another-token-123456", timeout=120)
    assert time.monotonic() - began < 90
    assert _processes_in(tmp_path / "data") == []  # the failed server's process group is gone
    assert probe(label_studio.url, label_studio.token) == "ready"  # the session's server is untouched


def test_unreachable_label_studio_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI: boom"):
        unavailable("boom")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="unavailable: boom"):
        unavailable("boom")
