"""HTTP receiver for Label Studio webhooks, plus periodic reconciliation.

``POST /webhooks/label-studio`` accepts ``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``,
``ANNOTATIONS_CREATED`` and ``ANNOTATIONS_DELETED`` (Label Studio's name for a deletion;
``ANNOTATION_DELETED`` is accepted too). Every import is idempotent, so redelivery is harmless.

Order of checks, cheapest first, so a hostile request costs nothing:

1. the shared secret in the ``X-Mycelium-Secret`` header (401, the body is never read);
2. the body size: a ``Content-Length`` over ``max_body_bytes`` is refused at once, and a body
   that grows past it while streaming is refused as soon as it does (413);
3. the payload: a JSON object with a string ``action``; annotation ids that are positive
   64-bit integers, ISO-8601 timestamps, a list ``result`` (400 with a one-line reason,
   nothing written, nothing sent to Label Studio).

A well-formed event of a known action without an annotation (Label Studio's ``send_payload``
off) triggers a reconciliation pull instead; one runs at a time, and a Label Studio that cannot
be reached answers 503 with a one-line reason.

A background thread also reconciles every ``reconcile_every`` seconds, catching whatever the
webhook missed while the receiver was down.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from label_studio_sdk import LabelStudio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.db.session import session_scope
from labeling.client import SECRET_HEADER, AnnotationVersion, annotation_version, connect_from_settings
from labeling.importer import ImportOutcome, import_annotation, import_deletion, reconcile
from labeling.review_labels import ReviewResultError
from labeling.rounds import open_round

log = logging.getLogger("mycelium.webhook")

WEBHOOK_PATH = "/webhooks/label-studio"
UPSERT_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
DELETE_ACTIONS = frozenset({"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"})
MAX_BODY_ENV = "MYCELIUM_WEBHOOK_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_ANNOTATIONS_PER_EVENT = 1_000
_BIGINT_MAX = 2**63 - 1

ClientFactory = Callable[[], LabelStudio]


class MalformedWebhook(ValueError):
    """A webhook body the receiver refuses (answered 400; nothing is written or sent)."""


class BodyTooLarge(ValueError):
    """A webhook body over the configured cap (answered 413)."""


@dataclass(frozen=True)
class WebhookEvent:
    """A validated event: upserts, deletions, a bare (payload-less) event, or one to ignore."""

    action: str
    upserts: tuple[AnnotationVersion, ...] = ()
    deletions: tuple[int, ...] = ()
    bare: bool = False
    ignored: bool = False


def max_body_bytes_from_env() -> int:
    """``MYCELIUM_WEBHOOK_MAX_BODY_BYTES`` (a positive integer), else 10 MiB."""
    raw = os.environ.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_BODY_ENV}={raw!r} is not an integer number of bytes") from None
    if value <= 0:
        raise ValueError(f"{MAX_BODY_ENV}={raw!r} must be positive")
    return value


def _positive_bigint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedWebhook(f"{what} must be an integer, got {_describe(value)}")
    if not 1 <= value <= _BIGINT_MAX:
        raise MalformedWebhook(f"{what} {value} is outside 1..2^63-1")
    return value


def _describe(value: Any) -> str:
    """A short, one-line rendering of a JSON value for an error message."""
    if isinstance(value, (dict, list)):
        return f"{type(value).__name__} of {len(value)}"
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _check_result(result: Any, who: str) -> None:
    """A ``result`` the label builder can read: a list of objects whose ``value`` is an object,
    ``labels`` / ``choices`` lists of strings, ``start`` / ``end`` integers."""
    if result is None:
        return
    if not isinstance(result, list):
        raise MalformedWebhook(f"{who}: result must be a list of objects, got {_describe(result)}")
    for index, item in enumerate(result):
        where = f"{who}: result[{index}]"
        if not isinstance(item, dict):
            raise MalformedWebhook(f"{where} must be an object, got {_describe(item)}")
        value = item.get("value")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise MalformedWebhook(f"{where}.value must be an object, got {_describe(value)}")
        # value.text is the span's string for ``labels`` items; a list of strings for ``textarea``.
        for key in ("labels", "choices", "text") if item.get("type") == "textarea" else ("labels", "choices"):
            entries = value.get(key)
            if entries is not None and not (isinstance(entries, list) and all(isinstance(e, str) for e in entries)):
                raise MalformedWebhook(f"{where}.value.{key} must be a list of strings, got {_describe(entries)}")
        for key in ("start", "end"):
            offset = value.get(key)
            if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
                raise MalformedWebhook(f"{where}.value.{key} must be an integer, got {_describe(offset)}")


def _timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise MalformedWebhook(f"{what} must be an ISO-8601 timestamp string, got {_describe(value)}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedWebhook(f"{what} {value!r} is not an ISO-8601 timestamp") from None


def _annotation_dicts(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The event's annotation objects; ``None`` when it carries none (a bare event)."""
    if "annotation" not in body and "annotations" not in body:
        return None
    items: list[Any] = []
    for key in ("annotation", "annotations"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            items.append(value)
        elif isinstance(value, list):
            items.extend(value)
        else:
            raise MalformedWebhook(f"{key!r} must be an object or a list of objects, got {_describe(value)}")
    if len(items) > MAX_ANNOTATIONS_PER_EVENT:
        raise MalformedWebhook(f"{len(items)} annotations in one event, more than {MAX_ANNOTATIONS_PER_EVENT}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedWebhook(f"annotation #{index} must be an object, got {_describe(item)}")
    return items


def _upsert(raw: dict[str, Any]) -> AnnotationVersion:
    ident = _positive_bigint(raw.get("id"), "annotation id")
    who = f"annotation {ident}"
    task = raw.get("task")
    if isinstance(task, dict):
        task = task.get("id")
    _positive_bigint(task, f"{who}: task id")
    stamp = raw.get("updated_at") if raw.get("updated_at") is not None else raw.get("created_at")
    if stamp is None:
        raise MalformedWebhook(f"{who}: no updated_at or created_at")
    _timestamp(stamp, f"{who}: updated_at")
    _check_result(raw.get("result"), who)
    completed_by = raw.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    if completed_by is not None:
        _positive_bigint(completed_by, f"{who}: completed_by")
    if not isinstance(raw.get("was_cancelled", False), bool):
        raise MalformedWebhook(f"{who}: was_cancelled must be true or false")
    return annotation_version({**raw, "task": task, "completed_by": completed_by})


def parse_event(raw: bytes) -> WebhookEvent:
    """Validate a webhook body; raises :class:`MalformedWebhook` with a one-line reason."""
    if not raw.strip():
        raise MalformedWebhook("empty body: expected a JSON object with an 'action'")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedWebhook("body is not UTF-8") from None
    except json.JSONDecodeError as error:
        raise MalformedWebhook(f"body is not JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except RecursionError:
        raise MalformedWebhook("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise MalformedWebhook(f"body must be a JSON object, got {type(body).__name__}")
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise MalformedWebhook(f"'action' must be a non-empty string, got {_describe(action)}")
    if action not in UPSERT_ACTIONS | DELETE_ACTIONS:
        return WebhookEvent(action[:100], ignored=True)
    annotations = _annotation_dicts(body)
    if annotations is None:
        return WebhookEvent(action, bare=True)
    if not annotations:
        raise MalformedWebhook(f"{action} with an empty annotation list")
    if action in UPSERT_ACTIONS:
        return WebhookEvent(action, upserts=tuple(_upsert(a) for a in annotations))
    deleted = tuple(_positive_bigint(a.get("id"), f"deleted annotation #{i} id") for i, a in enumerate(annotations))
    return WebhookEvent(action, deletions=deleted)


def _outcome_json(outcome: ImportOutcome) -> dict[str, Any]:
    return {
        "ls_annotation_id": outcome.ls_annotation_id,
        "status": outcome.status,
        "labels_appended": list(outcome.labels_appended),
    }


def reconcile_open_round(client_factory: ClientFactory) -> dict[str, Any]:
    """Pull the open round's annotations (all rounds' if none is open)."""
    client = client_factory()
    with session_scope() as session:
        current = open_round(session)
        report = reconcile(session, client, current.number if current else None)
        return report.as_dict()


class ReconcileUnavailable(RuntimeError):
    """A reconciliation that could not run (Label Studio unreachable or failing): answered 503."""


class ReconcileBusy(RuntimeError):
    """A reconciliation is already running; this event is covered by it (answered 202)."""


def handle_event(
    event: WebhookEvent | dict[str, Any],
    client_factory: ClientFactory,
    reconcile_lock: threading.Lock | None = None,
) -> dict[str, Any]:
    """Import one validated event; bare events reconcile instead (one at a time).

    A ``dict`` is validated first (:class:`MalformedWebhook` on a bad one).
    """
    if isinstance(event, dict):
        event = parse_event(json.dumps(event).encode())
    if event.ignored:
        return {"action": event.action, "ignored": True}
    if event.upserts:
        outcomes = []
        for version in event.upserts:
            with session_scope() as session:
                outcomes.append(import_annotation(session, version))
        return {"action": event.action, "imported": [_outcome_json(o) for o in outcomes]}
    if event.deletions:
        outcomes = []
        for ident in event.deletions:
            with session_scope() as session:
                outcomes.append(import_deletion(session, ident))
        return {"action": event.action, "deleted": [_outcome_json(o) for o in outcomes]}
    lock = reconcile_lock or threading.Lock()
    if not lock.acquire(blocking=False):
        raise ReconcileBusy("a reconciliation is already running")
    try:
        return {"action": event.action, "reconciled": reconcile_open_round(client_factory)}
    except Exception as error:  # Label Studio down, refusing the key, answering garbage: one line, 503
        detail = " ".join(str(error).split())[:200]
        raise ReconcileUnavailable(f"reconciliation failed: {type(error).__name__}: {detail}") from error
    finally:
        lock.release()


def _authorised(request: Request, secret: str) -> bool:
    given = request.headers.get(SECRET_HEADER, "")
    return hmac.compare_digest(given.encode(), secret.encode())


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The body, refused (:class:`BodyTooLarge`) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise MalformedWebhook(f"Content-Length {declared[:40]!r} is not an integer") from None
        if size > limit:
            raise BodyTooLarge(f"body of {size:,} bytes is over the {limit:,}-byte limit")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class PeriodicReconciler:
    """A daemon thread that reconciles every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, client_factory: ClientFactory):
        self.interval = interval
        self.client_factory = client_factory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mycelium-reconcile", daemon=True)
        self.runs = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = reconcile_open_round(self.client_factory)
                self.runs += 1
                log.info("periodic reconciliation: %s", report)
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("periodic reconciliation failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def create_app(
    secret: str,
    client_factory: ClientFactory = connect_from_settings,
    reconcile_every: float = 0.0,
    max_body_bytes: int | None = None,
) -> Starlette:
    """The receiver app. ``reconcile_every`` > 0 starts the periodic reconciliation thread;
    ``max_body_bytes`` defaults to ``MYCELIUM_WEBHOOK_MAX_BODY_BYTES`` or 10 MiB."""
    if not secret:
        raise ValueError("the webhook receiver needs a shared secret (LABEL_STUDIO_WEBHOOK_SECRET)")
    limit = max_body_bytes if max_body_bytes is not None else max_body_bytes_from_env()
    if limit <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {limit}")
    reconcile_lock = threading.Lock()

    def receive(raw: bytes) -> JSONResponse:
        try:
            event = parse_event(raw)
        except MalformedWebhook as error:
            log.warning("refused webhook: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        try:
            return JSONResponse(handle_event(event, client_factory, reconcile_lock))
        except ReviewResultError as error:
            log.warning("rejected annotation: %s", error)
            return JSONResponse({"error": str(error)}, status_code=422)
        except ReconcileBusy as error:
            return JSONResponse({"action": event.action, "reconciliation": str(error)}, status_code=202)
        except ReconcileUnavailable as error:
            log.warning("%s", error)
            return JSONResponse({"error": str(error)}, status_code=503)
        except Exception as error:  # a database failure, say: logged in full, answered in one line
            log.exception("webhook %s failed", event.action)
            reason = f"internal error ({type(error).__name__}); see the receiver's log"
            return JSONResponse({"error": reason}, status_code=500)

    async def webhook(request: Request) -> JSONResponse:
        if not _authorised(request, secret):  # before a single body byte is read
            return JSONResponse({"error": f"missing or wrong {SECRET_HEADER} header"}, status_code=401)
        try:
            raw = await read_capped_body(request, limit)
        except BodyTooLarge as error:
            return JSONResponse({"error": str(error)}, status_code=413)
        except MalformedWebhook as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        except ClientDisconnect:
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        return await run_in_threadpool(receive, raw)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        reconciler = PeriodicReconciler(reconcile_every, client_factory) if reconcile_every > 0 else None
        if reconciler:
            reconciler.start()
        try:
            yield
        finally:
            if reconciler:
                reconciler.stop()

    return Starlette(
        routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )


def serve(host: str, port: int, secret: str, reconcile_every: float = 300.0) -> None:
    """Run the receiver with uvicorn until interrupted."""
    import uvicorn

    app = create_app(secret, reconcile_every=reconcile_every)
    uvicorn.run(app, host=host, port=port, log_level="info")
