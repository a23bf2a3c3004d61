"""Run a local Label Studio server: a cached venv, a pre-migrated data-dir template, start/stop.

Label Studio (~1 GB of dependencies) lives in its own venv under the cache directory
(``$MYCELIUM_CACHE`` or ``~/.cache/mycelium``), never in the project venv. Migrating a fresh
SQLite database takes ~20 s, so it is done once per Label Studio version into a template
directory; every server starts from a copy of it and is up in a few seconds.

The first user (and its legacy API token) is created from the environment on start. Label
Studio silently moves to the next port if the requested one is busy, so health is checked
with *this* server's token: another server on the port cannot answer it.

Secrets: there is no default password (an unset one is generated), and the token and password
files in the data directory are created with mode 0600 from the start (:func:`write_secret`);
commands print where they are, never their content.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LABEL_STUDIO_REQUIREMENT = "label-studio>=1.23,<1.24"
LABEL_STUDIO_PINS: tuple[str, ...] = ("sentry-sdk>=2.16,<3",)
"""Upper bounds Label Studio's own metadata lacks: it asks for ``sentry-sdk>=2.16`` and calls
``sentry_sdk.init(send_default_pii=…)``, which sentry-sdk 3.0 refuses ("Unknown option"), so a
fresh install resolving 3.0 cannot start."""
PINS_MARKER = ".mycelium-pins"  # in the venv: the pins it was installed (or repaired) with
DEFAULT_USERNAME = "admin@mycelium.local"
TOKEN_FILE = "mycelium-token"  # in the data dir: the first user's legacy API token (mode 0600)
PASSWORD_FILE = "mycelium-password"  # in the data dir: the first user's password (mode 0600)
SECRET_MODE = 0o600
DATABASE_FILE = "label_studio.sqlite3"
READY_MARKER = ".mycelium-template-ready"
LOG_FILE = "mycelium-label-studio.log"


class LabelStudioServerError(RuntimeError):
    """Label Studio could not be installed, prepared or started."""


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """``$MYCELIUM_CACHE`` or ``~/.cache/mycelium``."""
    return Path(os.environ.get("MYCELIUM_CACHE") or "~/.cache/mycelium").expanduser()


def venv_dir() -> Path:
    """The dedicated Label Studio venv."""
    return cache_dir() / "label-studio-venv"


def template_dir(version: str) -> Path:
    """The pre-migrated data directory for Label Studio ``version``."""
    return cache_dir() / f"label-studio-template-{version}"


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock (parallel test sessions share the cache)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(message: str) -> None:
    print(f"[label-studio] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- secrets


def generate_password() -> str:
    """A fresh random password for the first Label Studio user."""
    return secrets.token_urlsafe(18)


def write_secret(path: Path, value: str) -> Path:
    """Write ``value`` to ``path`` readable by its owner only, at no moment by anyone else.

    The content goes to a temporary file created with mode 0600 in the same directory, which then
    replaces ``path`` atomically: an existing file with looser permissions is never written into.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, SECRET_MODE)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_secret(path: Path) -> str | None:
    """The stripped content of a secret file, or None if it is missing or empty."""
    try:
        value = Path(path).read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


# --------------------------------------------------------------------------- install


def installed_version(venv: Path | None = None) -> str | None:
    """The Label Studio version importable in ``venv``, or None if it is missing or broken."""
    python = _venv_bin(venv or venv_dir(), "python")
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; import label_studio; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
        env=_base_env(),
    )
    if probe.returncode != 0:
        return None
    return probe.stdout.strip() or None


def ensure_venv(python: str = "python3.11", requirement: str = LABEL_STUDIO_REQUIREMENT) -> tuple[Path, str]:
    """Create (or reuse) the Label Studio venv; return its path and the installed version."""
    venv = venv_dir()
    pins = " ".join(LABEL_STUDIO_PINS)
    with _file_lock("label-studio-venv"):
        version = installed_version(venv)
        marker = venv / PINS_MARKER
        if version is not None and (marker.read_text() if marker.is_file() else None) != pins:
            # a venv installed before these pins (or by hand): apply them in place
            _log(f"applying {pins} to {venv}")
            done = subprocess.run([str(_venv_bin(venv, "python")), "-m", "pip", "install", "-q", requirement,
                                   *LABEL_STUDIO_PINS], capture_output=True, text=True)
            if done.returncode != 0:
                raise LabelStudioServerError(f"applying {pins} to {venv} failed:\n{done.stderr[-3000:]}")
            marker.write_text(pins)
            version = installed_version(venv)
        if version is not None:
            return venv, version
        interpreter = shutil.which(python) or shutil.which("python3")
        if interpreter is None:
            raise LabelStudioServerError(f"no Python interpreter {python!r} to create {venv}")
        _log(f"installing {requirement} into {venv} (about 1 GB, a few minutes)")
        if venv.exists():
            shutil.rmtree(venv)
        steps = [
            [interpreter, "-m", "venv", str(venv)],
            [str(_venv_bin(venv, "python")), "-m", "pip", "install", "-q", "--upgrade", "pip"],
            [str(_venv_bin(venv, "python")), "-m", "pip", "install", "-q", requirement, *LABEL_STUDIO_PINS],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                raise LabelStudioServerError(
                    f"installing Label Studio failed at {' '.join(step)!r}:\n{done.stderr[-3000:]}"
                )
        version = installed_version(venv)
        if version is None:
            raise LabelStudioServerError(f"{requirement} installed into {venv} but does not import")
        (venv / PINS_MARKER).write_text(pins)
        return venv, version


def ensure_template(venv: Path, version: str) -> Path:
    """Build (once) a data directory with all Label Studio migrations applied and no users."""
    template = template_dir(version)
    if (template / READY_MARKER).exists():
        return template
    with _file_lock(f"label-studio-template-{version}"):
        if (template / READY_MARKER).exists():
            return template
        staging = template.with_name(template.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _log(f"migrating a template data directory for Label Studio {version} (~20 s, once)")
        env = _base_env() | {"LABEL_STUDIO_BASE_DATA_DIR": str(staging), "LATEST_VERSION_CHECK": "false"}
        done = subprocess.run(
            [str(_venv_bin(venv, "label-studio")), "version"], capture_output=True, text=True, env=env, cwd=staging
        )
        if done.returncode != 0 or not (staging / DATABASE_FILE).exists():
            raise LabelStudioServerError(f"migrating the Label Studio template failed:\n{done.stderr[-3000:]}")
        (staging / READY_MARKER).write_text(version + "\n")
        shutil.rmtree(template, ignore_errors=True)
        staging.rename(template)
        return template


def ensure_installed() -> tuple[Path, Path, str]:
    """The venv, the template and the Label Studio version, installing whatever is missing."""
    venv, version = ensure_venv()
    return venv, ensure_template(venv, version), version


# --------------------------------------------------------------------------- run


def _base_env() -> dict[str, str]:
    """A minimal environment: Label Studio reads bare ``HOST``, ``PORT``, ``USERNAME``… too."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {key: os.environ[key] for key in keep if key in os.environ}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LabelStudioServer:
    """A running Label Studio process (its own process group) and how to reach it."""

    url: str
    port: int
    token: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    data_dir: Path
    log_path: Path
    version: str
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float = 0.0

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the whole process group; SIGKILL what is left after ``timeout``."""
        if not self.is_running():
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> LabelStudioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_env(data_dir: Path, token: str, username: str, password: str) -> dict[str, str]:
    """The environment of a Label Studio server process."""
    return _base_env() | {
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SSRF_PROTECTION_ENABLED": "false",  # webhooks go to a loopback receiver
        "LATEST_VERSION_CHECK": "false",  # no internet
        "WEBHOOK_TIMEOUT": "10",  # the receiver writes to Postgres before answering
        "LOG_LEVEL": "WARNING",
    }


def prepare_data_dir(data_dir: Path, template: Path) -> None:
    """Copy the template into ``data_dir`` unless it already holds a Label Studio database."""
    if (data_dir / DATABASE_FILE).exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, data_dir, dirs_exist_ok=True)


def start(
    port: int,
    data_dir: Path,
    token: str,
    *,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
    host: str = "127.0.0.1",
    timeout: float = 180.0,
) -> LabelStudioServer:
    """Start Label Studio on ``host:port`` with ``data_dir`` (copied from the template if new).

    Returns once ``/health`` is up and ``token`` authenticates; raises
    :class:`LabelStudioServerError` with the server log otherwise. ``token`` must be longer
    than 5 characters (Label Studio ignores shorter ones). Without ``password`` a random one is
    generated (it only matters for a new data dir; see ``server.password``).
    """
    if len(token) <= 5:
        raise LabelStudioServerError("the Label Studio user token must be longer than 5 characters")
    password = password or generate_password()
    venv, template, version = ensure_installed()
    began = time.monotonic()
    data_dir = Path(data_dir).expanduser().resolve()
    prepare_data_dir(data_dir, template)
    log_path = data_dir / LOG_FILE
    command = [
        str(_venv_bin(venv, "label-studio")),
        "start",
        "--internal-host",
        host,
        "--port",
        str(port),
        "--no-browser",
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(data_dir, token, username, password),
            cwd=data_dir,
            start_new_session=True,
        )
    server = LabelStudioServer(
        url=f"http://{host}:{port}",
        port=port,
        token=token,
        username=username,
        password=password,
        data_dir=data_dir,
        log_path=log_path,
        version=version,
        process=process,
    )
    try:
        wait_until_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - began
    return server


def store_credentials(server: LabelStudioServer, *, fresh: bool, password_given: bool) -> str:
    """Save the server's token (and a generated password of a new data dir) in 0600 files of its
    data dir; return what to print: where the secrets are, never the secrets themselves."""
    token_file = write_secret(server.data_dir / TOKEN_FILE, server.token)
    if fresh and not password_given:
        password_line = f"in {write_secret(server.data_dir / PASSWORD_FILE, server.password)} (generated)"
    elif fresh:
        password_line = "the one given with --password"
    else:
        saved = server.data_dir / PASSWORD_FILE
        password_line = "unchanged: set when the data dir was created" + (f" (see {saved})" if saved.exists() else "")
    return (
        f"Label Studio {server.version} at {server.url}\n  user: {server.username}\n  password: {password_line}\n"
        f"  LABEL_STUDIO_URL={server.url}\n  API token: in {token_file}\n"
        f"    export LABEL_STUDIO_API_KEY=\"$(cat {token_file})\"\n  log: {server.log_path}\nCtrl-C stops it."
    )


def probe(url: str, token: str) -> str:
    """``"ready"``, ``"down"`` (no healthy server yet) or ``"unauthorised"`` (up, token refused)."""
    try:
        health = httpx.get(f"{url}/health", timeout=2.0)
        if health.status_code != 200:
            return "down"
        whoami = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=5.0)
    except httpx.HTTPError:
        return "down"
    if whoami.status_code == 200:
        return "ready"
    return "unauthorised" if whoami.status_code in (401, 403) else "down"


def is_ready(url: str, token: str) -> bool:
    """True if ``url`` is a healthy Label Studio that accepts ``token``."""
    return probe(url, token) == "ready"


def wait_until_ready(server: LabelStudioServer, timeout: float) -> None:
    """Poll until the server is ready; fail early if the process dies or refuses the token."""
    deadline = time.monotonic() + timeout
    refusals = 0
    while time.monotonic() < deadline:
        if not server.is_running():
            raise LabelStudioServerError(
                f"Label Studio exited with code {server.process.returncode} before it was ready; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        state = probe(server.url, server.token)
        if state == "ready":
            return
        refusals = refusals + 1 if state == "unauthorised" else 0
        if refusals >= 5:
            raise LabelStudioServerError(
                f"Label Studio at {server.url} is up but refuses the token: either another server holds the "
                f"port, or the data dir {server.data_dir} was created with a different token"
            )
        time.sleep(0.5)
    raise LabelStudioServerError(
        f"Label Studio at {server.url} was not ready after {timeout:.0f} s; log {server.log_path}:\n{server.log_tail()}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m labeling.server install``: prepare the venv and template (used by CI)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m labeling.server install", file=sys.stderr)
        return 2
    started = time.monotonic()
    venv, template, version = ensure_installed()
    print(f"Label Studio {version}: venv {venv}, template {template} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
