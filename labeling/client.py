"""A thin, idempotent shell over ``label-studio-sdk`` 2.x for the review project.

Authentication: the SDK sends a non-JWT API key as ``Authorization: Token <key>`` (the legacy
token, which the server accepts when ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``); a JWT
refresh token is exchanged for access tokens automatically.

Tasks are keyed by ``data.mycelium_key`` (``r<round>-p<problem>``), so whatever Label Studio
already holds is found again and never imported twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from label_studio_sdk import LabelStudio

from app.errors import UserError, first_line

UNCERTAINTY_SAMPLING = "Uncertainty sampling"
PREDICTION_SCORE_ORDERING = "tasks:predictions_score"
ANNOTATION_ACTIONS: tuple[str, ...] = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
SECRET_HEADER = "X-Mycelium-Secret"
DEFAULT_PROJECT_TITLE = "Mycelium review"
IMPORT_CHUNK = 200


class LabelStudioError(UserError, RuntimeError):
    """Label Studio answered, but not as the review workflow needs (or is unreachable)."""

    exit_code = 2


def explain_failure(error: Exception, url: str) -> LabelStudioError | None:
    """A one-line :class:`LabelStudioError` for an SDK / HTTP failure (never its headers), or None."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(error, ApiError):
        status = error.status_code
        if status in (401, 403):
            return LabelStudioError(
                f"Label Studio at {url} rejected the API key (HTTP {status}): set LABEL_STUDIO_API_KEY to a valid "
                "token (the one `mycelium labelstudio start` saved, or Account & Settings → Access Token)"
            )
        detail = error.body.get("detail") if isinstance(error.body, dict) else error.body
        return LabelStudioError(f"Label Studio at {url} answered HTTP {status}: {first_line(str(detail or ''), 200)}")
    if isinstance(error, httpx.TransportError):
        return LabelStudioError(
            f"cannot reach Label Studio at {url} ({type(error).__name__}): start it with "
            "`mycelium labelstudio start` or point LABEL_STUDIO_URL at yours"
        )
    return None


def task_key(round_number: int, problem_id: int) -> str:
    """The idempotency key stored in a task's data."""
    return f"r{round_number}-p{problem_id}"


def connect(url: str, api_key: str | None, timeout: float = 60.0) -> LabelStudio:
    """An SDK client for ``url`` (legacy token or JWT refresh token)."""
    if not api_key:
        raise LabelStudioError(f"no Label Studio API key for {url}: set LABEL_STUDIO_API_KEY")
    return LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=timeout)


def connect_from_settings() -> LabelStudio:
    """An SDK client from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``."""
    from app.config import get_settings

    settings = get_settings()
    return connect(settings.label_studio_url, settings.label_studio_api_key)


# --------------------------------------------------------------------------- project


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    title: str
    model_version: str | None
    sampling: str | None


def find_project(client: LabelStudio, title: str) -> ProjectInfo | None:
    """The project titled exactly ``title`` (the lowest id if several), or None."""
    matches = [p for p in client.projects.list(title=title) if p.title == title]
    if not matches:
        return None
    project = min(matches, key=lambda p: p.id)
    return ProjectInfo(project.id, project.title, project.model_version, project.sampling)


def ensure_project(client: LabelStudio, title: str, label_config: str, model_version: str) -> ProjectInfo:
    """Create or update the review project: label config, uncertainty sampling, model version."""
    settings = {
        "label_config": label_config,
        "sampling": UNCERTAINTY_SAMPLING,
        "model_version": model_version,
        "show_collab_predictions": True,
        "maximum_annotations": 1,
    }
    existing = find_project(client, title)
    if existing is None:
        created = client.projects.create(title=title, description="Mycelium active-learning review", **settings)
        project_id = created.id
    else:
        current = client.projects.get(id=existing.id)
        changed = {key: value for key, value in settings.items() if getattr(current, key, None) != value}
        if changed:
            client.projects.update(id=existing.id, **changed)
        project_id = existing.id
    project = client.projects.get(id=project_id)
    if project.sampling != UNCERTAINTY_SAMPLING or project.model_version != model_version:
        raise LabelStudioError(
            f"Label Studio project {project_id} ({title!r}) kept sampling={project.sampling!r}, "
            f"model_version={project.model_version!r} after the update"
        )
    return ProjectInfo(project.id, project.title, project.model_version, project.sampling)


def ensure_webhook(client: LabelStudio, project_id: int, url: str, secret: str | None) -> int:
    """Create (or fix) the project's annotation webhook to ``url``; return its id."""
    headers = {SECRET_HEADER: secret} if secret else {}
    wanted = {
        "url": url,
        "send_payload": True,
        "send_for_all_actions": False,
        "actions": list(ANNOTATION_ACTIONS),
        "headers": headers,
        "is_active": True,
    }
    for hook in client.webhooks.list(project=project_id):
        if hook.url != url:
            continue
        same = (
            sorted(hook.actions or []) == sorted(ANNOTATION_ACTIONS)
            and (hook.headers or {}) == headers
            and hook.send_payload
            and hook.is_active
        )
        if not same:
            client.webhooks.update(id=hook.id, **wanted)
        return hook.id
    return client.webhooks.create(project=project_id, **wanted).id


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskRef:
    """A task as the review workflow sees it."""

    id: int
    key: str | None
    problem_id: int | None
    round_number: int | None
    predictions_score: float | None
    total_annotations: int


def _task_ref(task: Any) -> TaskRef:
    data = task.data or {}
    return TaskRef(
        id=int(task.id),
        key=data.get("mycelium_key"),
        problem_id=data.get("problem_id"),
        round_number=data.get("round"),
        predictions_score=getattr(task, "predictions_score", None),
        total_annotations=int(getattr(task, "total_annotations", 0) or 0),
    )


def list_tasks(client: LabelStudio, project_id: int, ordering: str | None = PREDICTION_SCORE_ORDERING) -> list[TaskRef]:
    """All tasks of the project, ordered by ``ordering`` (default: prediction score, lowest first)."""
    query = json.dumps({"ordering": [ordering]}) if ordering else None
    tasks = client.tasks.list(project=project_id, query=query, page_size=100, fields="task_only")
    return [_task_ref(task) for task in tasks]


def import_tasks(client: LabelStudio, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
    """Import tasks (with their predictions) and return the new task ids in order."""
    task_ids: list[int] = []
    for start in range(0, len(tasks), IMPORT_CHUNK):
        chunk = list(tasks[start : start + IMPORT_CHUNK])
        response = client.projects.import_tasks(id=project_id, request=chunk, return_task_ids=True)
        ids = list(response.task_ids or [])
        if len(ids) != len(chunk):
            raise LabelStudioError(
                f"Label Studio project {project_id} imported {len(ids)} of {len(chunk)} tasks: {response}"
            )
        task_ids.extend(int(i) for i in ids)
    return task_ids


def next_task_id(client: LabelStudio, project_id: int) -> int | None:
    """The task Label Studio's labeling stream serves next (honours the project's sampling)."""
    wrapper = client._client_wrapper  # the SDK has no typed method for /next
    response = wrapper.httpx_client.request(f"api/projects/{project_id}/next", method="GET")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise LabelStudioError(f"GET /api/projects/{project_id}/next answered {response.status_code}: {response.text}")
    return int(response.json()["id"])


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class AnnotationVersion:
    """One version of an annotation, as the importer needs it."""

    id: int
    task_id: int
    updated_at: datetime
    result: list[dict[str, Any]]
    annotator: str | None
    was_cancelled: bool
    lead_time_s: float | None = None  # Label Studio ``lead_time``: seconds the reviewer spent


def annotation_version(raw: Any) -> AnnotationVersion:
    """Normalise an SDK annotation object or a webhook ``annotation`` dict."""
    get = raw.get if isinstance(raw, dict) else lambda key, default=None: getattr(raw, key, default)
    updated = get("updated_at") or get("created_at")
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated.replace("Z", "+00:00"))
    if not isinstance(updated, datetime):
        raise LabelStudioError(f"Label Studio annotation {get('id')} has no updated_at")
    completed_by = get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    return AnnotationVersion(
        id=int(get("id")),
        task_id=int(get("task")),
        updated_at=updated,
        result=list(get("result") or []),
        annotator=None if completed_by is None else f"ls-user:{completed_by}",
        was_cancelled=bool(get("was_cancelled", False)),
        lead_time_s=float(get("lead_time")) if isinstance(get("lead_time"), (int, float)) else None,
    )


def task_annotations(client: LabelStudio, task_id: int) -> list[AnnotationVersion]:
    """The current annotations of one task."""
    return [annotation_version(a) for a in client.annotations.list(id=task_id)]


def annotations_of(client: LabelStudio, task_ids: Iterable[int]) -> dict[int, list[AnnotationVersion]]:
    """Current annotations per task id."""
    return {task_id: task_annotations(client, task_id) for task_id in task_ids}
