"""Issue 16, defects 2 and 3: the webhook receiver checks the secret before reading the body,
caps the body, and answers malformed payloads 4xx with a one-line reason — writing nothing and
sending nothing to Label Studio."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from labeling.webhook import WEBHOOK_PATH, MalformedWebhook, create_app, parse_event

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret"
HEADERS = {"X-Mycelium-Secret": SECRET}


class CountingFactory:
    """A Label Studio client factory that records every call and fails like an unreachable server."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):  # noqa: ANN204 - returns nothing, raises
        self.calls += 1
        raise httpx.ConnectError("[Errno 111] Connection refused")


def _annotation(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"id": 7, "task": 3, "updated_at": "2025-01-02T03:04:05Z", "result": []}
    base.update(overrides)
    return base


MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"{nope"),
    ("invalid utf-8", b'{"action": "\xff\xfe"}'),
    ("deep", b"[" * 100_000 + b"]" * 100_000),
    ("array", b"[1, 2]"),
    ("no action", b"{}"),
    ("action not a string", json.dumps({"action": 5}).encode()),
    ("id not an integer", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(id="x")}).encode()),
    ("id a float", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(id=1.5)}).encode()),
    ("id a bool", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(id=True)}).encode()),
    ("id overflows bigint", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(id=2**70)}).encode()),
    ("task overflows bigint", json.dumps({"action": "ANNOTATION_UPDATED", "annotation": _annotation(task=2**63)}).encode()),
    ("negative task", json.dumps({"action": "ANNOTATION_UPDATED", "annotation": _annotation(task=-1)}).encode()),
    ("bad timestamp", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(updated_at="yesterday")}).encode()),
    ("numeric timestamp", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(updated_at=5)}).encode()),
    ("no timestamp", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(updated_at=None)}).encode()),
    ("no task", json.dumps({"action": "ANNOTATION_CREATED", "annotation": {"id": 7, "updated_at": "2025-01-01"}}).encode()),
    ("result a string", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(result="abc")}).encode()),
    ("result an object", json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(result={"a": 1})}).encode()),
    ("result item value a string",
     json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(result=[{"value": "x"}])}).encode()),
    ("result labels not strings",
     json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(result=[{"value": {"labels": [{}]}}])}).encode()),
    ("annotation a string", json.dumps({"action": "ANNOTATION_CREATED", "annotation": "7"}).encode()),
    ("annotation list item a number", json.dumps({"action": "ANNOTATIONS_CREATED", "annotations": [5]}).encode()),
    ("empty annotation list", json.dumps({"action": "ANNOTATIONS_CREATED", "annotations": []}).encode()),
    ("deletion id a string", json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": "7"}]}).encode()),
    ("deletion id overflows", json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2**64}]}).encode()),
    ("was_cancelled a string",
     json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation(was_cancelled="no")}).encode()),
]


@pytest.mark.parametrize(("name", "body"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_parse_event_refuses_malformed_bodies_in_one_line(name: str, body: bytes) -> None:
    with pytest.raises(MalformedWebhook) as caught:
        parse_event(body)
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 200, message


def test_parse_event_accepts_label_studio_shapes() -> None:
    event = parse_event(json.dumps({"action": "ANNOTATION_CREATED", "annotation": _annotation()}).encode())
    assert [v.id for v in event.upserts] == [7] and event.upserts[0].task_id == 3
    nested = parse_event(json.dumps({"action": "ANNOTATION_UPDATED", "annotation": _annotation(task={"id": 4})}).encode())
    assert nested.upserts[0].task_id == 4
    assert parse_event(b'{"action": "ANNOTATION_CREATED"}').bare
    assert parse_event(b'{"action": "PROJECT_UPDATED", "annotation": 5}').ignored
    assert parse_event(json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 9}]}).encode()).deletions == (9,)


@pytest.fixture()
def receiver(db_session: Session) -> Iterator[tuple[TestClient, CountingFactory]]:
    factory = CountingFactory()
    app = create_app(SECRET, client_factory=factory, max_body_bytes=1024 * 1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, factory


def _stored(session: Session) -> tuple[int, int]:
    from app.db.models import Annotation, Label

    session.rollback()
    return (
        session.scalar(select(func.count()).select_from(Annotation)) or 0,
        session.scalar(select(func.count()).select_from(Label)) or 0,
    )


@pytest.mark.parametrize(("name", "body"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_malformed_payload_answers_400_writes_nothing_calls_nobody(
    receiver: tuple[TestClient, CountingFactory], db_session: Session, name: str, body: bytes
) -> None:
    client, factory = receiver
    response = client.post(WEBHOOK_PATH, headers=HEADERS, content=body)
    assert response.status_code == 400, response.text
    assert "\n" not in response.json()["error"]
    assert factory.calls == 0
    assert _stored(db_session) == (0, 0)


def test_unauthenticated_requests_trigger_no_outbound_work(
    receiver: tuple[TestClient, CountingFactory], db_session: Session
) -> None:
    client, factory = receiver
    for body in (b"", b"{nope", b'{"action": "ANNOTATION_CREATED"}'):
        assert client.post(WEBHOOK_PATH, content=body).status_code == 401
        assert client.post(WEBHOOK_PATH, headers={"X-Mycelium-Secret": "wrong"}, content=body).status_code == 401
    assert factory.calls == 0
    assert _stored(db_session) == (0, 0)


def test_payloadless_event_with_label_studio_down_answers_503_in_one_line(
    receiver: tuple[TestClient, CountingFactory], db_session: Session
) -> None:
    client, factory = receiver
    response = client.post(WEBHOOK_PATH, headers=HEADERS, json={"action": "ANNOTATION_CREATED"})
    assert response.status_code == 503
    assert response.json()["error"].startswith("reconciliation failed: ConnectError")
    assert factory.calls == 1
    assert _stored(db_session) == (0, 0)


def test_well_formed_event_for_an_unknown_task_is_imported_as_nothing(
    receiver: tuple[TestClient, CountingFactory], db_session: Session
) -> None:
    client, factory = receiver
    response = client.post(WEBHOOK_PATH, headers=HEADERS, json={"action": "ANNOTATION_CREATED", "annotation": _annotation()})
    assert response.status_code == 200
    assert response.json()["imported"][0]["status"] == "unknown_task"
    deleted = client.post(WEBHOOK_PATH, headers=HEADERS, json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 7}]})
    assert deleted.json()["deleted"][0]["status"] == "unknown_annotation"
    assert factory.calls == 0 and _stored(db_session) == (0, 0)


def test_body_over_the_cap_is_refused_413(receiver: tuple[TestClient, CountingFactory], db_session: Session) -> None:
    client, factory = receiver
    big = b'{"action": "ANNOTATION_CREATED", "pad": "' + b"x" * 1_100_000 + b'"}'
    assert client.post(WEBHOOK_PATH, headers=HEADERS, content=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        yield b'{"action": "ANNOTATION_CREATED", "pad": "'
        for _ in range(1_100):
            yield b"x" * 1024
        yield b'"}'

    streamed = client.post(WEBHOOK_PATH, headers=HEADERS, content=chunks())
    assert streamed.status_code == 413 and "limit" in streamed.json()["error"]
    assert factory.calls == 0 and _stored(db_session) == (0, 0)


def test_max_body_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from labeling.webhook import DEFAULT_MAX_BODY_BYTES, max_body_bytes_from_env

    monkeypatch.delenv("MYCELIUM_WEBHOOK_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes_from_env() == DEFAULT_MAX_BODY_BYTES == 10 * 1024 * 1024
    monkeypatch.setenv("MYCELIUM_WEBHOOK_MAX_BODY_BYTES", "1000")
    assert max_body_bytes_from_env() == 1000
    monkeypatch.setenv("MYCELIUM_WEBHOOK_MAX_BODY_BYTES", "ten")
    with pytest.raises(ValueError, match="not an integer"):
        max_body_bytes_from_env()


# --------------------------------------------------------------------------- memory under a large POST

_SERVE = """
import sys, uvicorn
from labeling.webhook import create_app
app = create_app("s3cret", client_factory=lambda: None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _post_stream(url: str, headers: dict[str, str], megabytes: int) -> int | str:
    chunk = b"x" * (1024 * 1024)

    def body() -> Iterator[bytes]:
        yield b'{"action": "ANNOTATION_CREATED", "pad": "'
        for _ in range(megabytes):
            yield chunk
        yield b'"}'

    size = megabytes * len(chunk) + 43
    try:
        response = httpx.post(url, headers={**headers, "Content-Length": str(size)}, content=body(), timeout=120)
        return response.status_code
    except httpx.TransportError as error:  # the receiver answered and closed before the upload ended
        return type(error).__name__


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_receiver_memory_stays_flat_under_a_300_mb_post() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], cwd=REPO_ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.2)
        baseline = _kib(server.pid, "VmRSS")
        unauthenticated = _post_stream(url + WEBHOOK_PATH, {}, 300)
        peak_unauthenticated = _kib(server.pid, "VmHWM")
        authenticated = _post_stream(url + WEBHOOK_PATH, HEADERS, 300)
        peak = _kib(server.pid, "VmHWM")
        growth_mb = (peak - baseline) / 1024
        print(f"receiver RSS: {baseline / 1024:.0f} MB before; peak {peak_unauthenticated / 1024:.0f} MB after a "
              f"300 MB unauthenticated POST (→ {unauthenticated}), {peak / 1024:.0f} MB after a 300 MB "
              f"authenticated one (→ {authenticated})")
        assert unauthenticated in (401, "WriteError", "RemoteProtocolError", "ReadError")
        assert authenticated in (413, "WriteError", "RemoteProtocolError", "ReadError")
        assert growth_mb < 50, f"receiver grew by {growth_mb:.0f} MB"
    finally:
        server.terminate()
        server.wait(timeout=30)
