"""Build a Label Studio task (problem text + scored pre-annotations) from plain data — pure.

A region's ``score`` is its own confidence; the prediction's ``score`` is the task score, the
value Label Studio's uncertainty sampling and the Data Manager order by (lowest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labeling.client import task_key
from labeling.config_xml import ANSWER_TYPE_CONTROL, ANSWER_TYPES, SPAN_CONTROL, SPAN_LABELS, TEXT_NAME, UNTYPED_LABEL


@dataclass(frozen=True)
class RegionPrediction:
    """A pre-annotated span: char offsets into the problem text, its label and confidence."""

    start: int
    end: int
    score: float | None
    label: str = UNTYPED_LABEL
    source: str | None = None


class TaskPayloadError(ValueError):
    """A region does not fit its problem."""


def region_result(problem_id: int, text: str, region: RegionPrediction, index: int) -> dict[str, Any]:
    """One ``labels`` result item for ``region`` (validated against ``text``)."""
    if not 0 <= region.start < region.end <= len(text):
        raise TaskPayloadError(
            f"problem {problem_id}: region [{region.start}, {region.end}) is outside its text of {len(text)} chars"
        )
    label = region.label if region.label in SPAN_LABELS else UNTYPED_LABEL
    item: dict[str, Any] = {
        "id": f"p{problem_id}r{index}",
        "from_name": SPAN_CONTROL,
        "to_name": TEXT_NAME,
        "type": "labels",
        "value": {"start": region.start, "end": region.end, "text": text[region.start : region.end], "labels": [label]},
    }
    if region.score is not None:
        item["score"] = float(region.score)
    return item


def answer_type_result(answer_type: str) -> dict[str, Any] | None:
    """A ``choices`` result item pre-selecting ``answer_type`` (None if it is not offered)."""
    if answer_type not in ANSWER_TYPES:
        return None
    return {
        "id": "answer_type",
        "from_name": ANSWER_TYPE_CONTROL,
        "to_name": TEXT_NAME,
        "type": "choices",
        "value": {"choices": [answer_type]},
    }


def dedupe_regions(regions: Sequence[RegionPrediction]) -> list[RegionPrediction]:
    """One region per (start, end): the typed one if any, then the highest score; sorted by start."""
    best: dict[tuple[int, int], RegionPrediction] = {}
    for region in regions:
        key = (region.start, region.end)
        current = best.get(key)
        rank = (region.label != UNTYPED_LABEL, region.score if region.score is not None else -1.0)
        if current is None or rank > (
            current.label != UNTYPED_LABEL,
            current.score if current.score is not None else -1.0,
        ):
            best[key] = region
    return sorted(best.values(), key=lambda r: (r.start, r.end))


def build_task(
    *,
    problem_id: int,
    round_number: int,
    text: str,
    regions: Sequence[RegionPrediction],
    model_version: str,
    task_score: float,
    answer_type: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The import payload of one review task, with its prediction."""
    result = [region_result(problem_id, text, r, i) for i, r in enumerate(dedupe_regions(regions))]
    if answer_type:
        choice = answer_type_result(answer_type)
        if choice is not None:
            result.append(choice)
    return {
        "data": {
            TEXT_NAME: text,
            "problem_id": problem_id,
            "round": round_number,
            "mycelium_key": task_key(round_number, problem_id),
            "selection_reason": reason,
        },
        "predictions": [{"model_version": model_version, "score": float(task_score), "result": result}],
    }
