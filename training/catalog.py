"""The six specialist tasks by id (``C1`` … ``C6``)."""

from __future__ import annotations

from training.c1_segmenter import C1Task
from training.c2_classifier import C2Task
from training.c3_extractor import C3Task
from training.c4_implicit import C4Task
from training.c5_dependency import C5Task
from training.c6_answer import C6Task
from training.tasks import Task

SPECIALISTS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5", "C6")
TASKS: dict[str, Task] = {t.name: t for t in (C1Task(), C2Task(), C3Task(), C4Task(), C5Task(), C6Task())}
TASK_CODE_VERSION = "1"  # bump when a head / example change would alter what a config trains


def parse_specialists(text: str) -> list[str]:
    """``"all"`` or ``"C1,C3"`` (case-insensitive) → ordered ids; ValueError names an unknown one."""
    if text.strip().lower() == "all":
        return list(SPECIALISTS)
    chosen = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in TASKS]
    if unknown or not chosen:
        raise ValueError(f"unknown specialist {', '.join(unknown) or repr(text)}; choose all or from {', '.join(SPECIALISTS)}")
    return [s for s in SPECIALISTS if s in chosen]
