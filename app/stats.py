"""Counts for ``mycelium stats``: problems per dataset/split, traces per status, labels per source."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.db.models import Dataset, Problem, Program, Trace


def collect_stats(session: Session) -> dict:
    """A JSON-ready dict of the main counts in the database."""
    problems = session.execute(
        select(Dataset.name, Problem.split, func.count())
        .join(Problem, Problem.dataset_id == Dataset.id)
        .group_by(Dataset.name, Problem.split)
        .order_by(Dataset.name, Problem.split)
    ).all()
    traces = session.execute(
        select(Trace.status, func.count()).group_by(Trace.status).order_by(Trace.status)
    ).all()
    programs = session.execute(
        select(Program.source, Program.correct, func.count())
        .group_by(Program.source, Program.correct)
        .order_by(Program.source, Program.correct)
    ).all()
    labels = session.execute(
        text("SELECT task, source, total_rows, current_rows, withdrawals FROM label_stats ORDER BY task, source")
    ).all()
    return {
        "problems": [{"dataset": d, "split": str(s), "count": n} for d, s, n in problems],
        "traces": [{"status": str(s), "count": n} for s, n in traces],
        "programs": [{"source": str(s), "correct": c, "count": n} for s, c, n in programs],
        "labels": [
            {"task": t, "source": s, "total": n, "current": c, "withdrawn": w} for t, s, n, c, w in labels
        ],
    }
