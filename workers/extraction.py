"""Job kind ``extract``: teacher extraction (GPU queue), one item per problem, batched forward passes.

Parameters (as ``mycelium extract --queue`` sends them): ``teacher`` (model name or directory),
``mode`` (forced / generate), ``max_new_tokens``, ``batch_size``, ``dtype``, ``device``,
``local_files_only``, and the capture / signal settings read by ``ExtractionConfig.from_params``:
``capture_method`` (recompute / eager), ``signals`` (a ``SignalConfig`` dict, e.g. the
``--signals`` file), ``layers`` ("-1,-2"), ``heads`` ("0,3"), ``aggregation``, ``context``. A problem already extracted with the same teacher configuration
is skipped; a problem the teacher fails on gets its failed trace and fails its item.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Problem
from workers.kinds import JobKind, Params, register
from workers.problem_selection import problem_item_keys

if TYPE_CHECKING:
    from app.teacher.loading import Teacher


@lru_cache(maxsize=1)
def cached_teacher(name: str, dtype: str, device: str, local_files_only: bool) -> Teacher:
    """The teacher of this worker process, loaded once (a GPU worker serves one teacher at a time)."""
    from app.teacher.loading import load_teacher

    return load_teacher(name, dtype=dtype, device=device, local_files_only=local_files_only)


def extract_problems(session: Session, params: Params, keys: Sequence[str]) -> dict[str, str]:
    """Run the teacher over the problems in ``keys`` not extracted yet; store each reading or failure."""
    from app.teacher.run import ExtractionConfig
    from app.teacher.persist import get_or_create_teacher_config, pending_problem_ids, run_teacher, store_failure, store_reading

    teacher = cached_teacher(
        str(params["teacher"]),
        str(params.get("dtype", "auto")),
        str(params.get("device", "auto")),
        bool(params.get("local_files_only", True)),
    )
    config = ExtractionConfig.from_params(params)
    teacher_config_id = get_or_create_teacher_config(session, teacher, config).id
    todo = pending_problem_ids(session, [int(key) for key in keys], teacher_config_id)
    rows = {p.id: p for p in session.scalars(select(Problem).where(Problem.id.in_(todo)))}
    problems = [rows[problem_id] for problem_id in todo if problem_id in rows]
    failures = {str(problem_id): "no such problem" for problem_id in todo if problem_id not in rows}
    for problem, outcome in zip(problems, run_teacher(teacher, problems, config), strict=True):
        if isinstance(outcome, Exception):
            error = f"{type(outcome).__name__}: {outcome}"
            store_failure(session, problem.id, teacher_config_id, error)
            failures[str(problem.id)] = error
        else:
            store_reading(session, problem, teacher_config_id, outcome)
    return failures


EXTRACT = register(
    JobKind(
        name="extract",
        queue="gpu",
        version="1",
        list_items=problem_item_keys,
        process=extract_problems,
        batch_size=4,
        chunk_size=32,
        description="Teacher extraction: CoT, attention signals, spans, regions, C1 labels (traces rows).",
    )
)
