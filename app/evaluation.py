"""Held-out evaluation (design §10): gold is compared with the stored answers *afterwards*.

Order of work in :func:`evaluate`:

1. the **contamination guard** refuses (raising before anything is written) when any selected
   problem is in a label snapshot one of the models in use was trained on
   (``models.snapshot_id → label_snapshots.problem_ids``; a model whose ``snapshot_id`` was
   cleared is matched by ``snapshot_hash``);
2. gold-blind inference (:func:`app.inference.store.run_inference`) answers the problems without
   a stored result (all of them with ``recompute``) — it never reads a gold column;
3. only then this module reads ``problems.gold_answer`` and fills ``inference_results.correct``
   (the answer is mathematically equal to gold, :func:`app.execution.equivalence.equivalent`),
   ``inference_results.in_beam`` (some surviving candidate answer is) and ``programs.correct``;
4. error attribution (``app.attribution``) of every evaluated problem.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import Dataset, InferenceResult, LabelSnapshot, Problem, Program, SpecialistModel, Split
from app.errors import UserError
from app.execution.equivalence import equivalent
from app.execution.errors import ExecutionError
from app.inference.proposals import Specialists
from app.inference.search import SearchConfig
from app.inference.store import resolve_models, run_inference

__all__ = ["EvaluationError", "ContaminationError", "contaminated_problems", "check_contamination",
           "split_problem_ids", "file_problem_ids", "answer_matches", "score_results", "summarize",
           "evaluate", "write_predictions", "ScoredRow"]


class EvaluationError(UserError):
    """A user-facing refusal (one line, naming the record and the problem)."""


class ContaminationError(EvaluationError):
    """Some problems to evaluate were in the training snapshot of a model in use."""


# --------------------------------------------------------------------------- contamination guard


def contaminated_problems(session: Session, models: dict[str, SpecialistModel],
                          problem_ids: Sequence[int]) -> dict[int, list[str]]:
    """``{problem id: [specialists whose training snapshot contained it]}`` among ``problem_ids``."""
    wanted = set(problem_ids)
    found: dict[int, list[str]] = {}
    for task, model in sorted(models.items()):
        snapshot = None
        if model.snapshot_id is not None:
            snapshot = session.get(LabelSnapshot, model.snapshot_id)
        if snapshot is None and model.snapshot_hash:
            snapshot = session.scalar(select(LabelSnapshot).where(LabelSnapshot.content_hash == model.snapshot_hash))
        if snapshot is None:
            continue
        for problem_id in wanted.intersection(snapshot.problem_ids or []):
            found.setdefault(problem_id, []).append(task)
    return found


def check_contamination(session: Session, models: dict[str, SpecialistModel], problem_ids: Sequence[int],
                        model_version: str) -> None:
    """Raise :class:`ContaminationError` (one line) when any problem was trained on."""
    hits = contaminated_problems(session, models, problem_ids)
    if not hits:
        return
    first = min(hits)
    problem = session.get(Problem, first)
    where = f"problem {first}" + (f" ({problem.external_id}, split {problem.split})" if problem else "")
    raise ContaminationError(
        f"refusing to evaluate {model_version}: {len(hits)} of {len(problem_ids)} problems were in a training "
        f"snapshot of its models, e.g. {where} trained on by {', '.join(hits[first])}; nothing was written")


# --------------------------------------------------------------------------- selecting problems


def split_problem_ids(session: Session, dataset: str, split: str, limit: int | None = None) -> list[int]:
    """Problem ids of ``dataset``/``split`` in id order (at most ``limit``)."""
    try:
        split_value = Split(split)
    except ValueError:
        raise EvaluationError(f"unknown split {split!r}; expected train, dev or test") from None
    query = (select(Problem.id).join(Dataset).where(Dataset.name == dataset, Problem.split == split_value)
             .order_by(Problem.id))
    if limit:
        query = query.limit(limit)
    ids = list(session.scalars(query))
    if not ids:
        raise EvaluationError(f"no problems in dataset {dataset!r} split {split!r}; run `mycelium ingest` first")
    return ids


def file_problem_ids(session: Session, path: Path, dataset: str, *, write: bool,
                     guard: tuple[dict[str, SpecialistModel], str] | None = None) -> tuple[list[int], int]:
    """Problems of a JSONL file: the stored ones' ids, plus (``write``) the others ingested as ``test``.

    Refuses (nothing written) a file with malformed records, with problems stored in another
    split than ``test``, or — with ``guard = (models, model_version)`` — with stored problems a
    model in use was trained on. Returns ``(ids in file order, number newly ingested)``; without
    ``write`` only the already stored ids are returned.
    """
    from app.ingest import IngestError, ingest_file, parse_jsonl

    with path.open(encoding="utf-8") as handle:
        records, errors = parse_jsonl(handle, dataset, str(path))
    if errors:
        raise EvaluationError(f"{errors[0]} ({len(errors)} invalid record(s)); nothing was written")
    hashes = list(dict.fromkeys(record.content_hash for record in records))
    if not hashes:
        raise EvaluationError(f"{path}: no problems in the file")
    stored = {h: (pid, split) for pid, h, split in session.execute(
        select(Problem.id, Problem.content_hash, Problem.split).where(Problem.content_hash.in_(hashes)))}
    elsewhere = [(pid, split) for pid, split in stored.values() if split != Split.TEST]
    if elsewhere:
        pid, split = elsewhere[0]
        raise EvaluationError(
            f"{path}: {len(elsewhere)} problem(s) are already stored in another split, e.g. problem {pid} in "
            f"{split}; evaluate them with --dataset/--split instead; nothing was written")
    if guard is not None:
        check_contamination(session, guard[0], [pid for pid, _ in stored.values()], guard[1])
    inserted = 0
    if write and len(stored) < len(hashes):
        try:
            inserted = ingest_file(session, path, dataset, split=Split.TEST).inserted
        except IngestError as error:
            raise EvaluationError(str(error).splitlines()[0]) from None
        stored = {h: (pid, split) for pid, h, split in session.execute(
            select(Problem.id, Problem.content_hash, Problem.split).where(Problem.content_hash.in_(hashes)))}
    return [stored[h][0] for h in hashes if h in stored], inserted


# --------------------------------------------------------------------------- scoring (reads gold)


def answer_matches(answer: str | None, gold: str) -> bool:
    """Whether a stored answer is mathematically the gold answer (hostile input: no)."""
    if answer is None or not gold:
        return False
    try:
        return equivalent(answer, gold)
    except ExecutionError:
        return False


@dataclass(frozen=True)
class ScoredRow:
    """One evaluated problem (for reports and ``--predictions``)."""

    problem_id: int
    external_id: str | None
    content_hash: str
    answer: str | None
    probability: float | None
    correct: bool
    in_beam: bool
    ms: float
    paths_explored: int
    disagreement: bool


def score_results(session: Session, model_version: str, problem_ids: Sequence[int]) -> list[ScoredRow]:
    """Compare stored answers with gold; fill ``correct`` / ``in_beam`` (and ``programs.correct``)."""
    rows = session.execute(
        select(InferenceResult, Problem.gold_answer, Problem.external_id, Problem.content_hash)
        .join(Problem, Problem.id == InferenceResult.problem_id)
        .where(InferenceResult.model_version == model_version, InferenceResult.problem_id.in_(list(problem_ids)))
    ).all()
    by_problem = {result.problem_id: (result, gold, external_id, content_hash)
                  for result, gold, external_id, content_hash in rows}
    scored: list[ScoredRow] = []
    for problem_id in problem_ids:
        if problem_id not in by_problem:
            continue
        result, gold, external_id, content_hash = by_problem[problem_id]
        correct = answer_matches(result.answer, gold)
        in_beam = correct or any(answer_matches(c.get("answer"), gold) for c in result.candidates or [])
        result.correct, result.in_beam = correct, in_beam
        if result.program_id is not None:
            session.execute(update(Program).where(Program.id == result.program_id).values(correct=correct))
        scored.append(ScoredRow(problem_id, external_id, content_hash, result.answer, result.probability,
                                correct, in_beam, result.ms, result.paths_explored, result.disagreement))
    session.flush()
    return scored


def summarize(rows: Sequence[ScoredRow], model_version: str, **extra: Any) -> dict[str, Any]:
    """The figures of one evaluation: never a bare accuracy (design §10)."""
    n = len(rows)
    answered = sum(1 for row in rows if row.answer is not None)
    ms = [row.ms for row in rows]
    return {
        "n": n,
        "accuracy": round(sum(row.correct for row in rows) / n, 4) if n else None,
        "correct_in_beam": round(sum(row.in_beam for row in rows) / n, 4) if n else None,
        "ms_per_problem": round(statistics.median(ms), 2) if ms else None,
        "ms_mean": round(statistics.fmean(ms), 2) if ms else None,
        "model_version": model_version,
        "correct": sum(row.correct for row in rows),
        "answered": answered,
        "no_answer": n - answered,
        "disagreement": round(sum(row.disagreement for row in rows) / n, 4) if n else None,
        "paths_median": statistics.median([row.paths_explored for row in rows]) if rows else None,
        **extra,
    }


def write_predictions(path: Path, rows: Sequence[ScoredRow]) -> None:
    """One JSON line per problem: ``external_id`` (or the text hash), answer, probability, correct."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"external_id": row.external_id or row.content_hash, "answer": row.answer,
                                     "probability": row.probability, "correct": row.correct,
                                     "in_beam": row.in_beam}) + "\n")


def evaluate(session: Session, specialists: Specialists, problem_ids: Sequence[int], *, recompute: bool = False,
             config: SearchConfig = SearchConfig(), batch_size: int = 32,
             progress: Callable[[int], None] | None = None, round_id: int | None = None,
             attribute: bool = True, **extra: Any) -> tuple[dict[str, Any], list[ScoredRow]]:
    """Guard, infer (gold-blind), score, then (``attribute``) attribute each problem's outcome to
    the first failing stage (``app.attribution``, design §6; counts under ``"attribution"``).
    Commits per inference batch, after scoring and after attribution.

    Raises :class:`ContaminationError` before writing anything.
    """
    model_version = specialists.model_version
    models = resolve_models(session, model_version)
    check_contamination(session, models, problem_ids, model_version)
    solved = run_inference(session, specialists, problem_ids, recompute=recompute, config=config,
                           batch_size=batch_size, round_id=round_id, progress=progress)
    rows = score_results(session, model_version, problem_ids)
    session.commit()
    report = summarize(rows, model_version, solved_now=solved, **extra)
    if attribute:
        from app.attribution.store import attribute_problems

        outcome = attribute_problems(session, model_version, problem_ids, round_id)
        session.commit()
        report["attribution"] = outcome.as_dict()["outcomes"]
    return report, rows
