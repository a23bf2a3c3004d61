"""The review screen: label config and task payload built from a model draft (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from labeling.config_xml import label_config
from labeling.latex_readable import readable_latex
from labeling.task_payload import RegionPrediction, ReviewDraft, SelectionInfo, StepDraft, build_task

TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
FIRST = (0, TEXT.index(" How"))


def _draft() -> ReviewDraft:
    m48 = {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"}
    return ReviewDraft(
        source="model",
        program_text="48 / 2 = 24\n48 + 24 = 72",
        steps=(
            StepDraft(1, "DIV", FIRST, 0.61, (("DIV", 0.61), ("MUL", 0.3)),
                      (m48, {"kind": "constant", "value": "2"}), (0.9, 0.7)),
            StepDraft(2, "ADD", FIRST, 0.88, (), (m48, {"kind": "step", "ref": 1}), (0.8, 0.95)),
        ),
        regions=(RegionPrediction(*FIRST, 0.77), RegionPrediction(96, 120, 0.4)),
        answer_type="integer",
        answer_type_p=0.97,
        answer="72",
        program_status="executes",
        model_version="C1v1.C2v1.C3v1.C4v1.C5v1.C6v1",
    )


def test_label_config_has_program_relations_and_info() -> None:
    root = ET.fromstring(label_config())
    names = {el.get("name"): el.tag for el in root.iter() if el.get("name")}
    assert names["program"] == "TextArea" and names["span"] == "Labels" and names["review_info"] == "Text"
    assert [r.get("value") for r in root.iter("Relation")] == ["operand"]
    labels = {el.get("value") for el in root.iter("Label")}
    assert {"DIV", "ADD", "OPERAND", "REGION"} <= labels
    assert {el.get("value") for el in root.iter("Choice")} >= {"integer", "negative", "radical"}


def test_task_prefills_typed_regions_operand_relations_and_program() -> None:
    task = build_task(problem_id=5, round_number=2, text=TEXT, model_version="r2-abc", task_score=0.3,
                      draft=_draft(), selection=SelectionInfo(0.7, "C2 op entropy high", {"entropy": 0.81}),
                      dataset="gsm8k")
    result = task["predictions"][0]["result"]
    steps = [r for r in result if r["type"] == "labels" and r["value"]["labels"][0] in ("DIV", "ADD")]
    assert [(r["id"], r["value"]["labels"], r["score"]) for r in steps] == [
        ("p5s1", ["DIV"], 0.61), ("p5s2", ["ADD"], 0.88)]
    assert "p(op)=0.61  (next MUL 0.30)" in steps[0]["meta"]["text"][0]
    [operand] = [r for r in result if r["type"] == "labels" and r["value"]["labels"] == ["OPERAND"]]
    assert operand["value"]["text"] == "48" and operand["id"] == "p5o1"
    relations = [(r["from_id"], r["to_id"], r["labels"]) for r in result if r["type"] == "relation"]
    assert relations == [("p5s1", "p5o1", ["operand"]), ("p5s2", "p5o1", ["operand"])]
    context = [r for r in result if r["type"] == "labels" and r["value"]["labels"] == ["REGION"]]
    assert [(r["value"]["start"], r["score"]) for r in context] == [(96, 0.4)]  # the step span is not repeated
    [program] = [r for r in result if r["type"] == "textarea"]
    assert program["from_name"] == "program" and program["value"]["text"] == ["48 / 2 = 24\n48 + 24 = 72"]
    [choice] = [r for r in result if r["type"] == "choices"]
    assert choice["value"]["choices"] == ["integer"]
    info = task["data"]["review_info"]
    assert info.startswith("Why this task: C2 op entropy high\nUncertainty 0.70 (0 = model sure, 1 = needs a human)")
    assert "%" not in info and "entropy 0.81" in info and "Program answer: 72 (executes)" in info
    assert "model C1v1" in task["data"]["header"]


def test_reference_fallback_says_so_and_math_is_readable() -> None:
    text = "If $\\frac{3}{4}x = 6$, what is $x^2$?"
    task = build_task(problem_id=9, round_number=1, text=text, model_version="r1-attention", task_score=0.5,
                      draft=ReviewDraft(source="reference", program_text="6 / 3/4 = 8"), dataset="math")
    info = task["data"]["review_info"]
    assert "No trained specialists yet: pre-filled from the reference solution" in info
    assert "Readable: If (3)/(4)x = 6, what is x²?" in info
    assert "no model yet" in task["data"]["header"]
    assert readable_latex("$\\sqrt{2}\\cdot 3 \\le \\pi$") == "√(2)· 3 ≤ π"
