"""Job kind ``validate``: execution-validate each problem's reference solution and teacher traces.

One item is one problem; its results are the ``programs`` rows written by ``app.validation``
(one reference program per problem, one program per trace — unique indexes make re-runs no-ops).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Problem, Trace
from workers.kinds import JobKind, Params, register
from workers.problem_selection import problem_item_keys


def validate_problems(session: Session, params: Params, keys: Sequence[str]) -> dict[str, str]:
    """Validate the reference solution and every trace of each problem in ``keys``."""
    from app.validation import validate_reference, validate_trace

    ids = [int(key) for key in keys]
    problems = {p.id: p for p in session.scalars(select(Problem).where(Problem.id.in_(ids)))}
    missing = {key: "no such problem" for key in keys if int(key) not in problems}
    for problem_id in ids:
        if problem_id not in problems:
            continue
        validate_reference(session, problems[problem_id])
        for trace in session.scalars(select(Trace).where(Trace.problem_id == problem_id).order_by(Trace.id)):
            validate_trace(session, trace)
    return missing


VALIDATE = register(
    JobKind(
        name="validate",
        queue="cpu",
        version="1",
        list_items=problem_item_keys,
        process=validate_problems,
        batch_size=16,
        chunk_size=256,
        description="Execution validation of reference solutions and teacher traces (programs rows).",
    )
)
