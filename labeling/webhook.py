"""HTTP receiver for Label Studio webhooks, plus periodic reconciliation.

``POST /webhooks/label-studio`` accepts ``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``,
``ANNOTATIONS_CREATED`` and ``ANNOTATIONS_DELETED`` (Label Studio's name for a deletion;
``ANNOTATION_DELETED`` is accepted too). The request must carry the shared secret in the
``X-Mycelium-Secret`` header. An event without a payload (a webhook with ``send_payload``
off, or a body that is not JSON) triggers a reconciliation pull instead. Every import is
idempotent, so redelivery is harmless.

A background thread also reconciles every ``reconcile_every`` seconds, catching whatever the
webhook missed while the receiver was down.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from label_studio_sdk import LabelStudio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.db.session import session_scope
from labeling.client import SECRET_HEADER, annotation_version, connect_from_settings
from labeling.importer import ImportOutcome, import_annotation, import_deletion, reconcile
from labeling.review_labels import ReviewResultError
from labeling.rounds import open_round

log = logging.getLogger("mycelium.webhook")

WEBHOOK_PATH = "/webhooks/label-studio"
UPSERT_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
DELETE_ACTIONS = frozenset({"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"})

ClientFactory = Callable[[], LabelStudio]


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


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


def handle_event(body: dict[str, Any], client_factory: ClientFactory) -> dict[str, Any]:
    """Import one webhook event; payload-less events reconcile instead."""
    action = str(body.get("action") or "")
    annotations = _as_list(body.get("annotation")) + _as_list(body.get("annotations"))
    if action in UPSERT_ACTIONS and all("task" in a and "updated_at" in a for a in annotations) and annotations:
        outcomes = []
        for raw in annotations:
            with session_scope() as session:
                outcomes.append(import_annotation(session, annotation_version(raw)))
        return {"action": action, "imported": [_outcome_json(o) for o in outcomes]}
    if action in DELETE_ACTIONS and annotations and all("id" in a for a in annotations):
        outcomes = []
        for raw in annotations:
            with session_scope() as session:
                outcomes.append(import_deletion(session, int(raw["id"])))
        return {"action": action, "deleted": [_outcome_json(o) for o in outcomes]}
    if action and action not in UPSERT_ACTIONS | DELETE_ACTIONS:
        return {"action": action, "ignored": True}
    return {"action": action or None, "reconciled": reconcile_open_round(client_factory)}


def _authorised(request: Request, secret: str) -> bool:
    given = request.headers.get(SECRET_HEADER, "")
    return hmac.compare_digest(given.encode(), secret.encode())


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
) -> Starlette:
    """The receiver app. ``reconcile_every`` > 0 starts the periodic reconciliation thread."""
    if not secret:
        raise ValueError("the webhook receiver needs a shared secret (LABEL_STUDIO_WEBHOOK_SECRET)")

    def receive(request: Request, raw: bytes) -> JSONResponse:
        if not _authorised(request, secret):
            return JSONResponse({"error": f"missing or wrong {SECRET_HEADER} header"}, status_code=401)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        try:
            return JSONResponse(handle_event(body, client_factory))
        except ReviewResultError as error:
            log.warning("rejected annotation: %s", error)
            return JSONResponse({"error": str(error)}, status_code=422)

    async def webhook(request: Request) -> JSONResponse:
        raw = await request.body()
        return await run_in_threadpool(receive, request, raw)

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

    uvicorn.run(create_app(secret, reconcile_every=reconcile_every), host=host, port=port, log_level="info")
