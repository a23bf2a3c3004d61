"""Seed problems with attention-derived regions and machine labels for the review tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.models import (
    Dataset,
    Label,
    LabelSource,
    LabelTask,
    Problem,
    Program,
    ProgramSource,
    Region,
    RegionSource,
    Split,
)


@dataclass(frozen=True)
class SeedProblem:
    text: str
    region: str  # substring of text: the clause-expanded IAF region
    region_score: float
    operand: str  # substring of text: an operand match
    label_confidence: float
    execution_ok: bool | None = None
    split: Split = Split.TRAIN


SEED: tuple[SeedProblem, ...] = (
    SeedProblem(
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "she sold half as many clips in May",
        0.52,
        "48",
        0.55,
        execution_ok=False,
    ),
    # near-duplicate of the first (numbers changed): must not share its batch
    SeedProblem(
        "Natalia sold clips to 60 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "she sold half as many clips in May",
        0.58,
        "60",
        0.6,
        execution_ok=False,
    ),
    SeedProblem(
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?",
        "Weng earns $12 an hour",
        0.62,
        "50",
        0.6,
    ),
    SeedProblem(
        "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs.",
        "Betty has only half of the money",
        0.7,
        "$100",
        0.7,
    ),
    SeedProblem(
        "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
        "writes a 3-page letter to 2 different friends",
        0.8,
        "3",
        0.8,
        execution_ok=True,
    ),
    SeedProblem(
        "Albert buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza has 8 slices.",
        "A large pizza has 16 slices",
        0.9,
        "16",
        0.9,
        execution_ok=True,
    ),
    SeedProblem(
        "Ken created a care package to send to his brother, who was away at boarding school.",
        "Ken created a care package",
        0.95,
        "Ken",
        0.95,
    ),
    SeedProblem(  # dev split: never selected by the train pool
        "Mark has a garden with flowers. He planted plants of three different colors in it.",
        "He planted plants",
        0.1,
        "three",
        0.1,
        split=Split.DEV,
    ),
)


def seed_problems(session: Session, seed: tuple[SeedProblem, ...] = SEED) -> list[int]:
    """Insert the seed problems with one clause region, one operand region, machine C1/C2 labels."""
    dataset = Dataset(name="gsm8k", description="review test seed")
    session.add(dataset)
    session.flush()
    ids: list[int] = []
    for index, item in enumerate(seed):
        problem = Problem(
            dataset_id=dataset.id,
            external_id=f"seed-{index}",
            text=item.text,
            gold_answer="0",
            split=item.split,
            content_hash=hashlib.sha256(item.text.encode()).hexdigest(),
        )
        session.add(problem)
        session.flush()
        start = item.text.index(item.region)
        end = start + len(item.region)
        o_start = item.text.index(item.operand)
        session.add_all(
            [
                Region(
                    problem_id=problem.id,
                    char_start=start,
                    char_end=end,
                    text=item.region,
                    source=RegionSource.CLAUSE,
                    score=item.region_score,
                ),
                Region(
                    problem_id=problem.id,
                    char_start=o_start,
                    char_end=o_start + len(item.operand),
                    text=item.operand,
                    source=RegionSource.OPERAND,
                    score=None,
                ),
                Label(
                    problem_id=problem.id,
                    task=LabelTask.C1,
                    source=LabelSource.TEACHER,
                    confidence=item.label_confidence,
                    payload={"regions": [{"start": start, "end": end, "text": item.region}]},
                ),
                Label(
                    problem_id=problem.id,
                    task=LabelTask.C2,
                    source=LabelSource.TEACHER,
                    confidence=item.label_confidence,
                    payload={"regions": [{"start": start, "end": end, "text": item.region, "label": "MUL"}]},
                ),
            ]
        )
        if item.execution_ok is not None:
            session.add(
                Program(
                    problem_id=problem.id,
                    source=ProgramSource.TEACHER,
                    steps={"steps": []},
                    answer="1" if item.execution_ok else None,
                    executes=item.execution_ok,
                    correct=item.execution_ok,
                    error=None if item.execution_ok else "ZeroDivisionError",
                )
            )
        ids.append(problem.id)
    session.commit()
    return ids
