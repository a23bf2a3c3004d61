"""Hand-built reference / prediction payloads for the attribution tests (Natalia's clips).

Reference program: step 1 = DIV(48, const 2); step 2 = ADD(48, step 1) = 72.
"""

from __future__ import annotations

import copy
from typing import Any

TEXT = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?")
GOLD = "72"
S48 = TEXT.index("48")
FIRST = (0, TEXT.index(".") + 1)  # the first sentence
SECOND = (TEXT.index("How"), len(TEXT))


def p48() -> dict[str, Any]:
    return {"kind": "problem", "start": S48, "end": S48 + 2, "value": "48", "reading": "literal"}


def reference() -> dict[str, dict[str, Any]]:
    """C1–C6 label payloads (contract shapes)."""
    return {
        "C1": {"regions": [list(FIRST), list(SECOND)], "operand_spans": [[S48, S48 + 2]]},
        "C2": {"steps": [{"step": 1, "op": "DIV", "region": list(FIRST)}, {"step": 2, "op": "ADD", "region": None}]},
        "C3": {"steps": [
            {"step": 1, "op": "DIV", "operands": [p48(), {"kind": "constant", "value": "2"}]},
            {"step": 2, "op": "ADD", "operands": [p48(), {"kind": "step", "ref": 1}]},
        ]},
        "C4": {"constants": ["2"]},
        "C5": {"n_steps": 2, "edges": [[1, 2]]},
        "C6": {"answer_step": 2, "n_steps": 2, "answer_type": "integer"},
    }


def prediction() -> dict[str, dict[str, Any]]:
    """Prediction payloads equal to the reference, with the probabilities predictions carry."""
    ref = reference()
    pred = copy.deepcopy(ref)
    pred["C1"] = {"regions": [[*FIRST, 0.9], [*SECOND, 0.8]]}
    pred["C2"] = {"steps": [{"step": s["step"], "op": s["op"], "p": 0.9, "top": [[s["op"], 0.9]]}
                            for s in ref["C2"]["steps"]]}
    for step in pred["C3"]["steps"]:
        step["p"] = [0.9] * len(step["operands"])
    pred["C4"]["probs"] = {"2": 0.8}
    pred["C5"]["p"] = {"1-2": 0.9}
    pred["C6"].update(p=0.9, type_probs={"integer": 0.9})
    return pred


# Faults that make exactly one pipeline category fire (applied to a prediction in place).
def fault_segmentation(pred: dict) -> None:
    pred["C1"]["regions"] = [[*FIRST, 0.9]]  # the question sentence is missed


def fault_classification(pred: dict) -> None:
    pred["C2"]["steps"][0]["op"] = "MUL"
    pred["C3"]["steps"][0]["op"] = "MUL"


def fault_extraction(pred: dict) -> None:
    pred["C3"]["steps"][0]["operands"][1] = {"kind": "constant", "value": "3"}


def fault_dependency(pred: dict) -> None:
    pred["C5"]["edges"] = []


PIPELINE_FAULTS = {
    "SEGMENTATION": fault_segmentation,
    "CLASSIFICATION": fault_classification,
    "EXTRACTION": fault_extraction,
    "DEPENDENCY": fault_dependency,
}

COT_RIGHT = "In May she sold 48 / 2 = 24 clips. Altogether 48 + 24 = 72 clips. The answer is 72."
COT_WRONG_ANSWER = "In May she sold 48 / 2 = 24 clips. So 72 minus 2 gives 70. The answer is 70."
COT_NO_GOLD = "In May she sold 48 / 2 = 24 clips. Altogether 48 + 20 = 68 clips. The answer is 68."
