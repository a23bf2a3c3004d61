"""Turn a reviewer's Label Studio result into label payloads per specialist task — pure.

Payload formats (the same ones machine labels are read in when pre-filling a task):

* ``C1`` (segmenter): ``{"regions": [{"start", "end", "text"}]}`` — every marked span;
  an empty list is a valid "no regions" label.
* ``C2`` (classifier): ``{"regions": [{"start", "end", "text", "label"}]}`` — spans with an
  operation / role (not the untyped ``REGION``); absent if no span is typed.
* ``C6`` (answer): ``{"answer_type": "..."}`` — absent if no answer type was chosen.

Offsets are Python ``str`` character offsets into the problem text, end exclusive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labeling.config_xml import ANSWER_TYPE_CONTROL, NOTE_CONTROL, SPAN_CONTROL, UNTYPED_LABEL

HUMAN_CONFIDENCE = 1.0


class ReviewResultError(ValueError):
    """An annotation result that cannot be a label for its problem."""


def _spans(result: Iterable[Mapping[str, Any]], text: str) -> list[dict[str, Any]]:
    spans: dict[tuple[int, int, str], dict[str, Any]] = {}
    for item in result:
        if item.get("from_name") != SPAN_CONTROL or item.get("type") != "labels":
            continue
        value = item.get("value") or {}
        start, end = value.get("start"), value.get("end")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text):
            raise ReviewResultError(f"span {start!r}..{end!r} does not fit a text of {len(text)} characters")
        for label in value.get("labels") or [UNTYPED_LABEL]:
            spans[(start, end, label)] = {"start": start, "end": end, "text": text[start:end], "label": label}
    return [spans[key] for key in sorted(spans)]


def _choice(result: Iterable[Mapping[str, Any]], control: str) -> str | None:
    for item in result:
        if item.get("from_name") == control and item.get("type") == "choices":
            choices = (item.get("value") or {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def note(result: Iterable[Mapping[str, Any]]) -> str | None:
    """The reviewer's free-text note, if any."""
    for item in result:
        if item.get("from_name") == NOTE_CONTROL and item.get("type") == "textarea":
            lines = (item.get("value") or {}).get("text") or []
            joined = "\n".join(str(line) for line in lines).strip()
            if joined:
                return joined
    return None


def labels_from_result(result: list[Mapping[str, Any]], text: str) -> dict[str, dict[str, Any]]:
    """Label payloads by task (``"C1"``, ``"C2"``, ``"C6"``) from one annotation result."""
    spans = _spans(result, text)
    unique_regions = {(s["start"], s["end"]): s for s in spans}
    labels: dict[str, dict[str, Any]] = {
        "C1": {
            "regions": [
                {"start": s["start"], "end": s["end"], "text": s["text"]} for _, s in sorted(unique_regions.items())
            ]
        }
    }
    typed = [s for s in spans if s["label"] != UNTYPED_LABEL]
    if typed:
        labels["C2"] = {"regions": typed}
    answer_type = _choice(result, ANSWER_TYPE_CONTROL)
    if answer_type:
        labels["C6"] = {"answer_type": answer_type}
    return labels


def region_labels(payload: Mapping[str, Any]) -> list[tuple[int, int, str]]:
    """(start, end, label) of a C2 payload; accepts ``char_start``/``op`` spellings too."""
    out: list[tuple[int, int, str]] = []
    for region in payload.get("regions") or []:
        start = region.get("start", region.get("char_start"))
        end = region.get("end", region.get("char_end"))
        label = region.get("label", region.get("op", region.get("operation")))
        if isinstance(start, int) and isinstance(end, int) and isinstance(label, str):
            out.append((start, end, label))
    return out


# --------------------------------------------------------------------------- program-based review


def program_text_of(result: Iterable[Mapping[str, Any]]) -> str | None:
    """The reviewer's program (the ``program`` textarea), or None if it is empty / absent."""
    from labeling.config_xml import PROGRAM_CONTROL
    from labeling.program_text import textarea_lines

    for item in result:
        if item.get("from_name") == PROGRAM_CONTROL and item.get("type") == "textarea":
            joined = textarea_lines((item.get("value") or {}).get("text") or [])
            return joined or None
    return None


def answer_type_of(result: Iterable[Mapping[str, Any]]) -> str | None:
    """The answer type the reviewer chose, if any."""
    return _choice(result, ANSWER_TYPE_CONTROL)


def _merge(spans: Iterable[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def overlay_reviewer_spans(
    derived: Mapping[str, dict[str, Any]], result: list[Mapping[str, Any]], text: str
) -> dict[str, dict[str, Any]]:
    """Derived C1–C6 payloads with the reviewer's marked regions laid over them.

    C2: the k-th span typed with op X (in text order) becomes the region of the k-th step whose op
    is X (the program text decides the ops; the spans decide where each step reads). C1: its
    regions are the merged union of the derived regions and every step/context span the reviewer
    marked (``OPERAND`` mentions are operands, not regions). Other tasks are unchanged.
    """
    from labeling.config_xml import OPERAND_LABEL, OPERATION_LABELS

    out = {task: dict(payload) for task, payload in derived.items()}
    spans = _spans(result, text)
    by_op: dict[str, list[tuple[int, int]]] = {}
    for span in spans:
        if span["label"] in OPERATION_LABELS:
            by_op.setdefault(span["label"], []).append((span["start"], span["end"]))
    if "C2" in out:
        steps = []
        used: dict[str, int] = {}
        for step in out["C2"].get("steps") or []:
            op = step.get("op")
            k = used.get(op, 0)
            if op in by_op and k < len(by_op[op]):
                step = {**step, "region": list(by_op[op][k])}
                used[op] = k + 1
            steps.append(step)
        out["C2"] = {**out["C2"], "steps": steps}
    if "C1" in out:
        marked = [(s["start"], s["end"]) for s in spans if s["label"] != OPERAND_LABEL]
        derived_regions = [(int(r[0]), int(r[1])) for r in out["C1"].get("regions") or []]
        out["C1"] = {**out["C1"], "regions": _merge([*derived_regions, *marked])}
    return out
