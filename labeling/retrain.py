"""Closing a round retrains: snapshot → ``train`` (gpu) → ``evaluate`` dev/test + ``attribute`` (cpu).

The round records, in ``rounds.models_before`` / ``models_after``, the specialist versions
(``{"C1": "v1", …}``: the shape the ``error_round_comparison`` view reads) and, in
``rounds.stats["retrain"]``, everything else: the snapshot, the job ids, the pipeline model
versions with their dev/test accuracy before and after, the labels the round added, the
reviewers' time (Label Studio ``lead_time``), and the stopping rule's verdict.

Queued (default for the CLI): closing submits the ``train`` job and returns; each later
``mycelium round status`` (or :func:`advance`) moves the round on — when training succeeded it
records ``models_after`` and submits ``evaluate``; when evaluation is done it submits
``attribute`` and computes the metrics and the stopping rule. Inline (``--inline``, tests, the
demo): every job runs in this process, one after the other, through the same job table.

Stopping rule: the gain is ``after − before`` dev accuracy (end-to-end: the executed answer
equals gold); when it stays below ``min_gain`` for ``patience`` consecutive closed rounds,
``stop`` is true and ``round status`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    Annotation,
    AnnotationAction,
    InferenceResult,
    Job,
    JobStatus,
    Label,
    LabelSource,
    Problem,
    ReviewTask,
    Round,
    RoundStatus,
    SpecialistModel,
    Split,
)

SPECIALISTS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5", "C6")
EVAL_SPLITS: tuple[str, ...] = ("dev", "test")


@dataclass(frozen=True)
class RetrainConfig:
    """How a round's close retrains and when the loop should stop."""

    backbone: str | None = None  # None: the default MiniLM
    device: str = "auto"
    train: Mapping[str, Any] | None = None  # training.loop.TrainConfig fields
    eval_limit: int | None = None  # problems per evaluated split (None: all)
    min_gain: float = 0.01  # dev accuracy gain below which a round "gains nothing"
    patience: int = 2  # consecutive rounds below min_gain before stopping

    def as_json(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- pure


def model_version_of(models: Mapping[str, str]) -> str | None:
    """``{"C1": "v2", …}`` → ``"C1v2.C2v1…"`` (None unless all six are present)."""
    if not all(s in models for s in SPECIALISTS):
        return None
    return ".".join(f"{s}{models[s]}" for s in SPECIALISTS)


def stopping_rule(gains: list[float | None], min_gain: float, patience: int) -> dict[str, Any]:
    """Stop when the last ``patience`` gains (oldest first; None = not measured) are all < ``min_gain``."""
    recent = gains[-patience:] if patience > 0 else []
    below = 0
    for gain in reversed(gains):
        if gain is None or gain >= min_gain:
            break
        below += 1
    stop = len(recent) == patience and below >= patience
    return {
        "metric": "dev accuracy gain (after − before)",
        "gain": gains[-1] if gains else None,
        "min_gain": min_gain,
        "patience": patience,
        "rounds_below": below,
        "stop": stop,
        "advice": (f"stop: {below} rounds in a row gained less than {min_gain}" if stop
                   else "continue: start the next round"),
    }


# --------------------------------------------------------------------------- DB reads


def models_on_snapshot(session: Session, snapshot_hash: str) -> dict[str, str]:
    """The newest version of each specialist trained on the snapshot with ``snapshot_hash``."""
    rows = session.execute(
        select(SpecialistModel.specialist, SpecialistModel.version)
        .where(SpecialistModel.snapshot_hash == snapshot_hash)
        .order_by(SpecialistModel.specialist, SpecialistModel.id)
    ).all()
    return {str(specialist): version for specialist, version in rows}


def split_accuracy(session: Session, model_version: str | None) -> dict[str, dict[str, Any]]:
    """End-to-end accuracy per evaluated split: ``{"dev": {"n": 40, "accuracy": 0.35}, …}``."""
    if model_version is None:
        return {}
    rows = session.execute(
        select(Problem.split, func.count(), func.count().filter(InferenceResult.correct.is_(True)))
        .join(Problem, Problem.id == InferenceResult.problem_id)
        .where(InferenceResult.model_version == model_version, InferenceResult.correct.is_not(None))
        .group_by(Problem.split)
    ).all()
    return {str(split): {"n": int(n), "accuracy": round(correct / n, 4) if n else None} for split, n, correct in rows}


def specialist_metrics(session: Session, models: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each specialist's own scalar dev metrics (from its ``models`` row)."""
    out: dict[str, dict[str, Any]] = {}
    for specialist, version in models.items():
        row = session.scalar(select(SpecialistModel).where(
            SpecialistModel.specialist == specialist, SpecialistModel.version == version))
        if row is not None:
            out[specialist] = {k: v for k, v in (row.metrics or {}).items() if isinstance(v, (int, float))}
    return out


def review_effort(session: Session, round_: Round) -> dict[str, Any]:
    """Labels the round added and the reviewers' time (sum of the live annotations' ``lead_time``)."""
    human = (Label.round_id == round_.id) & (Label.source == LabelSource.HUMAN) & Label.is_withdrawal.is_(False)
    labels = int(session.scalar(select(func.count()).select_from(Label).where(human)) or 0)
    problems = int(session.scalar(select(func.count(func.distinct(Label.problem_id))).where(human)) or 0)
    rows = session.execute(
        select(Annotation.ls_annotation_id, Annotation.lead_time_s, Annotation.action, Annotation.verdict)
        .join(ReviewTask, ReviewTask.id == Annotation.review_task_id)
        .where(ReviewTask.round_id == round_.id)
        .order_by(Annotation.ls_updated_at)
    ).all()
    latest: dict[int, tuple[float | None, Any]] = {}
    for ls_id, lead, action, verdict in rows:
        if action == AnnotationAction.DELETED:
            latest.pop(ls_id, None)
        else:
            latest[ls_id] = (lead, verdict)
    seconds = sum(lead or 0.0 for lead, _ in latest.values())
    verdicts = [v for _, v in latest.values() if v]
    return {
        "labels_added": labels,
        "problems_labelled": problems,
        "annotator_seconds": round(seconds, 1),
        "seconds_per_task": round(seconds / len(latest), 1) if latest else None,
        "corrections_reproducing_gold": sum(1 for v in verdicts if v.get("correct")),
        "corrections_flagged": sum(1 for v in verdicts if not v.get("correct")),
    }


def _job_status(session: Session, job_id: int | None) -> str | None:
    job = session.get(Job, job_id) if job_id else None
    return None if job is None else str(job.status)


# --------------------------------------------------------------------------- the state machine


Submit = Callable[[str, dict[str, Any], list[str] | None], int]  # kind, params, item keys → job id


def start_retrain(session: Session, round_: Round, config: RetrainConfig, submit: Submit) -> dict[str, Any]:
    """Snapshot the train labels and submit ``train``; returns the round's ``retrain`` record."""
    from app.labels.snapshot import create_snapshot

    snapshot, _ = create_snapshot(session, Split.TRAIN.value)
    session.flush()
    before = dict(round_.models_before or {})
    record: dict[str, Any] = {
        "state": "training",
        "config": config.as_json(),
        "snapshot_id": snapshot.id,
        "snapshot_hash": snapshot.content_hash,
        "snapshot_counts": snapshot.counts,
        "before": {"model_version": model_version_of(before), "splits": split_accuracy(session, model_version_of(before)),
                   "specialists": specialist_metrics(session, before)},
        "effort": review_effort(session, round_),
    }
    params = {"specialists": list(SPECIALISTS), "snapshot_id": snapshot.id, "backbone": config.backbone,
              "device": config.device, "config": dict(config.train or {})}
    record["jobs"] = {"train": submit("train", params, list(SPECIALISTS))}
    round_.stats = {**(round_.stats or {}), "retrain": record}
    return record


def advance(session: Session, round_: Round, submit: Submit) -> dict[str, Any] | None:
    """Move a closed round's retraining on by what has finished (idempotent; see module doc)."""
    record = dict((round_.stats or {}).get("retrain") or {})
    if not record or record.get("state") == "done":
        return record or None
    jobs = dict(record.get("jobs") or {})
    config = RetrainConfig(**record.get("config", {}))
    if record["state"] == "training":
        status = _job_status(session, jobs.get("train"))
        if status != str(JobStatus.SUCCEEDED):
            record["train_status"] = status
            if status in (str(JobStatus.FAILED), str(JobStatus.CANCELLED)):
                record["state"] = "failed"
            return _save(round_, record)
        after = models_on_snapshot(session, record["snapshot_hash"])
        round_.models_after = after
        version = model_version_of(after)
        record["after"] = {"model_version": version, "specialists": specialist_metrics(session, after)}
        before_version = record["before"]["model_version"]
        jobs["evaluate"] = {}
        for split in EVAL_SPLITS:
            ids = _split_ids(session, split, config.eval_limit)
            for name, mv in (("after", version), ("before", before_version)):
                if mv is None or not ids or (name == "before" and record["before"]["splits"].get(split)):
                    continue
                jobs["evaluate"][f"{name}-{split}"] = submit("evaluate", {"model_version": mv}, [str(i) for i in ids])
        record.update(state="evaluating", jobs=jobs)
        _save(round_, record)
    if record["state"] == "evaluating":
        statuses = [_job_status(session, j) for j in (jobs.get("evaluate") or {}).values()]
        if any(s not in (str(JobStatus.SUCCEEDED), str(JobStatus.FAILED)) for s in statuses):
            return _save(round_, record)
        version = record["after"]["model_version"]
        ids = [i for split in EVAL_SPLITS for i in _split_ids(session, split, config.eval_limit)]
        if version is not None and ids:
            jobs["attribute"] = submit("attribute", {"model_version": version, "round_id": round_.id},
                                       [str(i) for i in ids])
        record["before"]["splits"] = split_accuracy(session, record["before"]["model_version"]) or record["before"]["splits"]
        record["after"]["splits"] = split_accuracy(session, version)
        before_dev = (record["before"]["splits"].get("dev") or {}).get("accuracy")
        after_dev = (record["after"]["splits"].get("dev") or {}).get("accuracy")
        gain = None if after_dev is None else round(after_dev - (before_dev or 0.0), 4)
        record["gain"] = gain
        record["stopping"] = stopping_rule(_previous_gains(session, round_) + [gain], config.min_gain, config.patience)
        record.update(state="done", jobs=jobs)
        _save(round_, record)
    return record


def _save(round_: Round, record: dict[str, Any]) -> dict[str, Any]:
    round_.stats = {**(round_.stats or {}), "retrain": record}
    return record


def _split_ids(session: Session, split: str, limit: int | None) -> list[int]:
    query = select(Problem.id).where(Problem.split == Split(split)).order_by(Problem.id)
    return list(session.scalars(query.limit(limit) if limit else query))


def _previous_gains(session: Session, round_: Round) -> list[float | None]:
    rounds = session.scalars(
        select(Round).where(Round.number < round_.number, Round.status == RoundStatus.CLOSED).order_by(Round.number)
    )
    return [((r.stats or {}).get("retrain") or {}).get("gain") for r in rounds
            if ((r.stats or {}).get("retrain") or {}).get("state") == "done"]


def queued_submit(kind: str, params: dict[str, Any], keys: list[str] | None) -> int:
    """Submit to the workers (returns the job id)."""
    from workers.submit import submit_job

    return submit_job(kind, params, keys).id


def inline_submit(kind: str, params: dict[str, Any], keys: list[str] | None) -> int:
    """Run the job in this process, to the end (returns the job id)."""
    from workers.submit import run_job_inline

    return int(run_job_inline(kind, params, keys)["id"])


def prepared_submit(kind: str, params: dict[str, Any], keys: list[str] | None) -> int:
    """Create-or-get the job row (committed on its own) without sending it anywhere."""
    from workers.kinds import get_kind
    from workers.submit import prepare_job

    return prepare_job(get_kind(kind), params, keys).id


def _all_job_ids(record: Mapping[str, Any]) -> list[int]:
    jobs = record.get("jobs") or {}
    ids = [jobs.get("train")] + list((jobs.get("evaluate") or {}).values()) + [jobs.get("attribute")]
    return [int(i) for i in ids if i]


def run_pending_inline(record: Mapping[str, Any]) -> None:
    """Run every unfinished job of a retrain record in this process (same job table as workers)."""
    from workers.runner import run_job_items, worker_name

    for job_id in _all_job_ids(record):
        run_job_items(job_id, limit=None, worker=worker_name("round-close"), transient_is_final=True)


def close_and_retrain(number: int | None, config: RetrainConfig, *, inline: bool,
                      force: bool = True) -> dict[str, Any]:
    """Close round ``number`` (or the open one), snapshot, retrain, and — inline — evaluate and
    attribute to the end. Returns the round summary. Each step commits before the next job runs."""
    from app.db.session import session_scope
    from labeling.rounds import close_round, get_round, round_summary

    submit = prepared_submit if inline else queued_submit
    with session_scope() as session:
        round_ = close_round(session, number, retrain=False)
        number = round_.number
        record = (round_.stats or {}).get("retrain") or start_retrain(session, round_, config, submit)
    for _ in range(4):  # training → evaluating → done (+ attribute)
        if not inline:
            break
        run_pending_inline(record)
        with session_scope() as session:
            record = advance(session, get_round(session, number), submit) or {}
        if record.get("state") in ("done", "failed"):
            run_pending_inline(record)
            break
    with session_scope() as session:
        round_ = get_round(session, number)
        if not inline:
            advance(session, round_, submit)
        return round_summary(session, round_)
