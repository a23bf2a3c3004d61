"""Job kind ``attribute``: error attribution (design §6) of evaluated problems, on the cpu queue.

One item is one problem with an evaluated ``inference_results`` row under the job's
``model_version`` (params: ``model_version``, optional ``round_id``, ``dataset`` / ``split`` /
``problem_ids`` / ``limit``). Results are ``attributions`` rows, one per problem × model version ×
round, updated in place on a re-run (idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from workers.kinds import JobKind, Params, register
from workers.problem_selection import problem_item_keys


def attribution_item_keys(session: Session, params: Params) -> list[str]:
    """Problems selected by the job's filters that have an evaluated result under ``model_version``."""
    from app.attribution.store import evaluated_problem_ids

    selected = [int(key) for key in problem_item_keys(session, {**params, "limit": None})]
    keys = [str(i) for i in evaluated_problem_ids(session, str(params["model_version"]), selected)]
    return keys[: int(params["limit"])] if params.get("limit") else keys


def attribute_items(session: Session, params: Params, keys: Sequence[str]) -> dict[str, str]:
    """Attribute the problems in ``keys``; a problem with no evaluated result fails alone."""
    from app.attribution.store import attribute_problems

    round_id = params.get("round_id")
    report = attribute_problems(session, str(params["model_version"]), [int(k) for k in keys],
                                round_id=int(round_id) if round_id is not None else None)
    return {str(i): f"no evaluated inference result under {params['model_version']}" for i in report.not_evaluated}


ATTRIBUTE = register(
    JobKind(
        name="attribute",
        queue="cpu",
        version="1",
        list_items=attribution_item_keys,
        process=attribute_items,
        batch_size=64,
        chunk_size=512,
        description="Error attribution of evaluated problems (attributions rows, design §6).",
    )
)
