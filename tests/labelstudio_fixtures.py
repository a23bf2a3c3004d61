"""Fixtures that run a real Label Studio server and the webhook receiver on loopback.

``label_studio`` starts Label Studio (session-scoped) on a free 127.0.0.1 port from a copy of
the cached, pre-migrated template; the first run installs Label Studio into its own venv
(~1 GB, a few minutes). If Label Studio cannot be installed or started, tests that need it
FAIL when ``CI`` is set (``CI=true``/``1``) and skip, with the reason, on a workstation.

Import the fixtures into a test module with
``from tests.labelstudio_fixtures import label_studio, ls_client, webhook_receiver  # noqa: F401``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from label_studio_sdk import LabelStudio

from labeling.server import LabelStudioServer, LabelStudioServerError, free_port, start


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"Label Studio is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Label Studio unavailable: {reason}")


_SHARED: dict[str, object] = {}  # one server per test session, even if several modules import the fixtures


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A running Label Studio (legacy token auth, SSRF protection off for loopback webhooks)."""
    server = _SHARED.get("label_studio")
    if not isinstance(server, LabelStudioServer) or not server.is_running():
        data_dir = tmp_path_factory.mktemp("label-studio") / "data"
        try:
            server = start(free_port(), data_dir, token=secrets.token_hex(20))
        except LabelStudioServerError as error:
            unavailable(str(error))
            raise  # unreachable: unavailable() always raises
        _SHARED["label_studio"] = server
    try:
        yield server
    finally:
        server.stop()  # idempotent: the last module's teardown finds it stopped


@pytest.fixture(scope="session")
def ls_client(label_studio: LabelStudioServer) -> LabelStudio:
    """An SDK client authenticated with the server's legacy token."""
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    try:
        client.users.whoami()
    except Exception as error:  # noqa: BLE001 — any failure means the server is unusable
        unavailable(f"{label_studio.url} does not answer the API: {error}")
    return client


@dataclass
class WebhookReceiver:
    """The running receiver: its URL and shared secret."""

    url: str
    secret: str

    @property
    def webhook_url(self) -> str:
        from labeling.webhook import WEBHOOK_PATH

        return self.url + WEBHOOK_PATH


@pytest.fixture(scope="session")
def webhook_receiver(database_url: str, label_studio: LabelStudioServer) -> Iterator[WebhookReceiver]:
    """``labeling.webhook`` served by uvicorn in a thread, importing into the test database."""
    shared = _SHARED.get("webhook_receiver")
    if isinstance(shared, WebhookReceiver):
        yield shared
        return
    import uvicorn

    from labeling.client import connect
    from labeling.webhook import create_app

    secret = secrets.token_hex(16)
    port = free_port()
    app = create_app(secret, client_factory=lambda: connect(label_studio.url, label_studio.token))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail(f"webhook receiver did not start on {url}")
    receiver = WebhookReceiver(url=url, secret=secret)
    _SHARED["webhook_receiver"] = receiver
    try:
        yield receiver
    finally:
        _SHARED.pop("webhook_receiver", None)
        server.should_exit = True
        thread.join(timeout=10)
