"""Which problems a job covers: its item keys from ``dataset`` / ``split`` / ``problem_ids`` / ``limit`` params."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, Problem, Split
from workers.kinds import Params


def problem_item_keys(session: Session, params: Params) -> list[str]:
    """Problem ids (as item keys, in id order) selected by the job's parameters.

    ``problem_ids`` (explicit ids) or ``dataset`` / ``split`` filters, then at most ``limit``.
    """
    query = select(Problem.id).join(Dataset).order_by(Problem.id)
    if params.get("problem_ids") is not None:
        query = query.where(Problem.id.in_([int(i) for i in params["problem_ids"]]))
    if params.get("dataset"):
        query = query.where(Dataset.name == params["dataset"])
    if params.get("split"):
        query = query.where(Problem.split == Split(params["split"]))
    if params.get("limit"):
        query = query.limit(int(params["limit"]))
    return [str(problem_id) for problem_id in session.scalars(query)]
