"""Job kind ``evaluate``: gold-blind inference of each problem, then scoring against gold.

One item is one problem. ``params``: ``model_version`` (the concrete pipeline version, resolved at
submission), ``recompute``, ``theta``, ``top_k``, ``max_paths``, ``batch_size``. A batch is refused
(every item fails) when a problem is in a training snapshot of the models in use. Results: the
``inference_results``, ``predictions`` and ``programs`` rows of ``app.inference.store``, scored by
``app.evaluation.score_results`` after inference wrote them (same transaction, committed by the
runner).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from sqlalchemy.orm import Session

from workers.kinds import JobKind, Params, register
from workers.problem_selection import problem_item_keys


@lru_cache(maxsize=2)
def _specialists(model_version: str):
    from app.db.session import session_scope
    from training.specialists import load_specialists

    with session_scope() as session:
        return load_specialists(session, model_version)


def evaluate_problems(session: Session, params: Params, keys: Sequence[str]) -> dict[str, str]:
    """Infer (unless stored and not ``recompute``) and score the problems in ``keys``."""
    from app.evaluation import check_contamination, score_results
    from app.inference.search import SearchConfig
    from app.inference.store import problem_texts, resolve_models, run_inference

    ids = [int(key) for key in keys]
    present = problem_texts(session, ids)
    missing = {key: "no such problem" for key in keys if int(key) not in present}
    ids = [i for i in ids if i in present]
    specialists = _specialists(params["model_version"])
    models = resolve_models(session, specialists.model_version)
    check_contamination(session, models, ids, specialists.model_version)
    config = SearchConfig(theta=float(params.get("theta", 0.85)), top_k=int(params.get("top_k", 3)),
                          max_paths=int(params.get("max_paths", 100)))
    run_inference(session, specialists, ids, recompute=bool(params.get("recompute")), config=config,
                  batch_size=int(params.get("batch_size", 32)), commit=False)
    score_results(session, specialists.model_version, ids)
    return missing


EVALUATE = register(
    JobKind(
        name="evaluate",
        queue="cpu",
        version="1",
        list_items=problem_item_keys,
        process=evaluate_problems,
        batch_size=32,
        chunk_size=256,
        description="Gold-blind inference with the trained specialists, then held-out scoring.",
    )
)
