"""Database shell of inference: read problem texts, run ``solve``, store what it answered.

Reads ``problems.id`` and ``problems.text`` only — never a gold answer or a reference solution —
and writes, per problem and pipeline version: one ``inference_results`` row, one ``predictions``
row per specialist (payload for the chosen program), and the chosen program as a ``programs`` row
(``source = model``, ``model_id`` = the C2 model). ``correct`` / ``in_beam`` stay NULL: the
evaluation module fills them afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import InferenceResult, LabelTask, Prediction, Problem, Program, ProgramSource, SpecialistModel
from app.errors import UserError
from app.inference.proposals import Specialists
from app.inference.search import SearchConfig
from app.inference.solve import TASKS, Solution, solve

__all__ = ["specialists_part", "with_selector", "ModelsNotRegistered", "parse_model_version", "resolve_models", "problem_texts",
           "stored_problem_ids", "run_inference", "store_solution"]

_VERSION_RE = re.compile(r"(C[1-6])([^.]+)")


class ModelsNotRegistered(UserError):
    """The specialists' versions have no ``models`` rows (nothing can be attributed to them)."""


def parse_model_version(model_version: str) -> dict[str, str]:
    """``"C1v1.C2v3.C3v1.C4v1.C5v1.C6v2"`` → ``{"C1": "v1", "C2": "v3", …}``."""
    parts = dict(_VERSION_RE.fullmatch(part).groups() for part in model_version.split(".")
                 if _VERSION_RE.fullmatch(part))
    missing = [task for task in TASKS if task not in parts]
    if missing:
        raise UserError(f"model version {model_version!r} names no version for {', '.join(missing)}")
    return parts


def resolve_models(session: Session, model_version: str) -> dict[str, SpecialistModel]:
    """The ``models`` row of each specialist in ``model_version``; raises :class:`ModelsNotRegistered`."""
    versions = parse_model_version(model_version)
    found: dict[str, SpecialistModel] = {}
    for task, version in versions.items():
        row = session.scalar(select(SpecialistModel).where(
            SpecialistModel.specialist == LabelTask(task), SpecialistModel.version == version))
        if row is None:
            raise ModelsNotRegistered(f"specialist {task} version {version} (of {model_version}) has no models row")
        found[task] = row
    return found


def specialists_part(model_version: str | None) -> str | None:
    """``C1v2.….C6v2.S1a2b3c4d`` → ``C1v2.….C6v2`` (the selector suffix removed)."""
    if not model_version:
        return model_version
    return ".".join(part for part in model_version.split(".") if not part.startswith("S"))


def with_selector(specialists, model_version: str | None = None):
    """The specialists with the candidate selector fitted for them (``MYCELIUM_HOME/models/
    selector/<version>/selector.json``) and the program verifier it reads (``…/verifier``, its
    sha256 checked) when one exists; a ``model_version`` naming a selector (``.S<sha8>``) must
    match it, one naming none gets none."""
    from app.config import get_settings
    from app.inference.selector import load_selector, selector_path
    from app.inference.solve import WithSelector

    wanted = [part[1:] for part in (model_version or "").split(".") if part.startswith("S")]
    if model_version and not wanted:
        return specialists
    path = selector_path(get_settings().mycelium_home, specialists.model_version)
    selector = load_selector(path)
    if wanted and (selector is None or not selector.sha256.startswith(wanted[0])):
        raise UserError(f"model version {model_version}: no selector S{wanted[0]} for {specialists.model_version}")
    if selector is None:
        return specialists
    verifier = None
    if selector.verifier_sha256:
        from training.checkpoint import artifact_sha256
        from training.verifier import VERIFIER_DIR, LoadedVerifier

        directory = path.parent / VERIFIER_DIR
        if not directory.is_dir():
            raise UserError(f"selector {path}: its program verifier {directory} is missing")
        if artifact_sha256(directory) != selector.verifier_sha256:
            raise UserError(f"selector {path}: program verifier {directory} does not match its sha256")
        verifier = LoadedVerifier(directory)
    return WithSelector(specialists, selector, verifier)


def problem_texts(session: Session, problem_ids: Sequence[int]) -> dict[int, str]:
    """``{problem id: text}`` — the only problem column inference reads."""
    rows = session.execute(select(Problem.id, Problem.text).where(Problem.id.in_(list(problem_ids))))
    return {problem_id: text for problem_id, text in rows}


def stored_problem_ids(session: Session, model_version: str, problem_ids: Sequence[int]) -> set[int]:
    """Problems that already have an inference result under ``model_version``."""
    return set(session.scalars(select(InferenceResult.problem_id).where(
        InferenceResult.model_version == model_version, InferenceResult.problem_id.in_(list(problem_ids)))))


def store_solution(session: Session, problem_id: int, solution: Solution,
                   models: dict[str, SpecialistModel], round_id: int | None = None) -> int:
    """Write (replacing any earlier result for this problem and version) one problem's outcome.

    Returns the ``inference_results`` id. The caller commits.
    """
    previous = session.scalar(select(InferenceResult).where(
        InferenceResult.problem_id == problem_id, InferenceResult.model_version == solution.model_version))
    if previous is not None:
        old_program = previous.program_id
        session.delete(previous)
        session.flush()
        if old_program is not None:
            session.execute(delete(Program).where(Program.id == old_program, Program.source == ProgramSource.MODEL))
    program_id = None
    if solution.program is not None:
        program = Program(problem_id=problem_id, model_id=models["C2"].id, source=ProgramSource.MODEL,
                          steps=solution.program, answer=solution.answer, executes=True, correct=None, error=None)
        session.add(program)
        session.flush()
        program_id = program.id
    result = InferenceResult(
        problem_id=problem_id, model_version=solution.model_version, round_id=round_id,
        program_id=program_id, answer=solution.answer, probability=solution.probability,
        paths_explored=solution.paths_explored, disagreement=solution.disagreement,
        candidates=solution.candidates, no_answer_reason=solution.no_answer_reason, ms=solution.ms,
    )
    session.add(result)
    for task, payload in solution.predictions.items():
        values = {"model_id": models[task].id, "problem_id": problem_id, "task": LabelTask(task),
                  "payload": payload, "confidence": solution.confidences.get(task), "round_id": round_id}
        statement = insert(Prediction).values(**values).on_conflict_do_update(
            constraint="uq_predictions_model_id_problem_id_task", set_={"payload": payload, "confidence": values["confidence"],
                                                        "round_id": round_id})
        session.execute(statement)
    session.flush()
    return result.id


def run_inference(session: Session, specialists: Specialists, problem_ids: Sequence[int], *,
                  recompute: bool = False, config: SearchConfig = SearchConfig(), batch_size: int = 32,
                  round_id: int | None = None, progress: Callable[[int], None] | None = None,
                  commit: bool = True) -> int:
    """Solve and store ``problem_ids`` (skipping those already stored unless ``recompute``).

    Commits after every batch when ``commit``; returns how many problems were solved.
    """
    models = resolve_models(session, specialists.model_version)
    ids = list(problem_ids)
    if not recompute:
        done = stored_problem_ids(session, specialists.model_version, ids)
        if progress and done:
            progress(len(done))
        ids = [i for i in ids if i not in done]
    solved = 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        texts = problem_texts(session, chunk)
        chunk = [i for i in chunk if i in texts]
        solutions = solve([texts[i] for i in chunk], specialists, config, batch_size=batch_size)
        for problem_id, solution in zip(chunk, solutions):
            store_solution(session, problem_id, solution, models, round_id)
        solved += len(chunk)
        if commit:
            session.commit()
        if progress:
            progress(len(chunk))
    return solved
