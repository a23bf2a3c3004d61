"""Attribution core (pure): each category fires exactly, precedence, alignment, region tolerance."""

from __future__ import annotations

import pytest

from app.attribution.align import REGION_MIN_COVERAGE, align_steps, match_regions
from app.attribution.program_view import read_program, value_key
from app.attribution.rules import CATEGORIES, NO_REFERENCE, Outcome, TeacherTrace, answer_in_text, attribute
from app.db.models import AttributionCategory
from tests.test_attribution_cases import (
    COT_NO_GOLD, COT_RIGHT, COT_WRONG_ANSWER, FIRST, GOLD, PIPELINE_FAULTS, SECOND, prediction, reference,
)

WRONG = Outcome(answer="70", correct=False, in_beam=False, candidates=[{"answer": "70", "probability": 0.9}])
WRONG_IN_BEAM = Outcome(answer="70", correct=False, in_beam=True,
                        candidates=[{"answer": "70", "probability": 0.6}, {"answer": "72", "probability": 0.4}])


def run(pred: dict | None = None, ref: dict | None = None, outcome: Outcome = WRONG, trace: TeacherTrace | None = None):
    return attribute(read_program(reference() if ref is None else ref),
                     read_program(prediction() if pred is None else pred), outcome, GOLD, trace)


def test_categories_are_the_model_enum_in_design_order() -> None:
    assert CATEGORIES == tuple(c.value for c in AttributionCategory)


def test_correct_answer_has_no_category() -> None:
    verdict = run(outcome=Outcome(answer="72", correct=True, in_beam=True))
    assert (verdict.category, verdict.outcome) == (None, "CORRECT")


def test_execution_when_everything_matches_and_gold_not_in_beam() -> None:
    verdict = run()
    assert (verdict.category, verdict.specialist) == ("EXECUTION", "executor")
    assert verdict.detail["failures"][0]["predicted"] == "70" and verdict.detail["also"] == []
    assert verdict.detail["alignment"] == [[1, 1], [2, 2]]


def test_selection_when_gold_was_a_candidate() -> None:
    verdict = run(outcome=WRONG_IN_BEAM)
    assert (verdict.category, verdict.specialist, verdict.detail["also"]) == ("SELECTION", "search", ["EXECUTION"])


def test_selection_decided_from_candidates_when_in_beam_unset() -> None:
    unset = Outcome(answer="70", correct=False, in_beam=None, candidates=WRONG_IN_BEAM.candidates)
    assert run(outcome=unset).category == "SELECTION"


@pytest.mark.parametrize("category", list(PIPELINE_FAULTS))
def test_each_pipeline_fault_fires_exactly_its_category(category: str) -> None:
    pred = prediction()
    PIPELINE_FAULTS[category](pred)
    verdict = run(pred)
    assert verdict.category == category
    assert verdict.detail["also"] == ["EXECUTION"]  # nothing else fires


def test_segmentation_detail_names_c1_and_the_missed_region() -> None:
    pred = prediction()
    PIPELINE_FAULTS["SEGMENTATION"](pred)
    failure = run(pred).detail["failures"][0]
    assert (failure["check"], failure["specialist"], failure["missed"]) == ("regions", "C1", [list(SECOND)])


def test_step_count_mismatch_is_segmentation_by_c6() -> None:
    pred = prediction()
    pred["C3"]["steps"].append({"step": 3, "op": "SELECT", "operands": [{"kind": "step", "ref": 2}]})
    pred["C2"]["steps"].append({"step": 3, "op": "SELECT"})
    pred["C6"].update(answer_step=3, n_steps=3)
    verdict = run(pred)
    assert verdict.category == "SEGMENTATION"
    assert verdict.detail["failures"] == [{"check": "n_steps", "specialist": "C6", "predicted": 3, "reference": 2}]


def test_classification_detail_has_predicted_and_reference_op() -> None:
    pred = prediction()
    PIPELINE_FAULTS["CLASSIFICATION"](pred)
    failure = run(pred).detail["failures"][0]
    assert failure == {"check": "op", "specialist": "C2", "step": 1, "predicted_step": 1,
                       "predicted": "MUL", "reference": "DIV"}


def test_extraction_blames_c3_when_c4_was_right_and_c4_when_it_was_wrong() -> None:
    pred = prediction()
    PIPELINE_FAULTS["EXTRACTION"](pred)
    verdict = run(pred)
    assert (verdict.category, verdict.specialist) == ("EXTRACTION", "C3")
    assert verdict.detail["failures"][0]["predicted"][1] == {"kind": "constant", "value": "3"}
    pred["C4"]["constants"] = ["3"]
    verdict = run(pred)
    assert (verdict.category, verdict.specialist) == ("EXTRACTION", "C4")
    assert verdict.detail["failures"][0] == {"check": "constants", "specialist": "C4",
                                             "predicted": ["3"], "reference": ["2"]}


def test_extraction_reading_changes_the_value() -> None:
    pred = prediction()
    pred["C3"]["steps"][0]["operands"][0].update(reading="percent", value="0.48")
    assert run(pred).category == "EXTRACTION"


def test_operands_compare_by_value_and_commutative_ops_ignore_order() -> None:
    pred = prediction()
    pred["C3"]["steps"][1]["operands"].reverse()  # ADD(step 1, 48): same step
    pred["C3"]["steps"][0]["operands"][1]["value"] = "2.0"
    assert run(pred).category == "EXECUTION"
    pred["C3"]["steps"][0]["operands"].reverse()  # DIV(2, 48): not the same step
    assert run(pred).category == "EXTRACTION"
    assert value_key("0.5") == value_key("1/2") == value_key("50%") == "1/2"


def test_dependency_answer_step_blames_c6() -> None:
    pred = prediction()
    pred["C6"]["answer_step"] = 1
    verdict = run(pred)
    assert (verdict.category, verdict.specialist) == ("DEPENDENCY", "C6")
    assert verdict.detail["failures"] == [{"check": "answer_step", "specialist": "C6", "predicted": 1, "reference": 2}]


def test_teacher_answer_not_in_cot_and_teacher_error() -> None:
    no_gold = TeacherTrace(cot_text=COT_NO_GOLD, teacher_answer="68", correct=False, trace_id=7)
    verdict = run(trace=no_gold)
    assert (verdict.category, verdict.specialist) == ("ANSWER_NOT_IN_COT", "teacher")
    assert verdict.detail["also"] == ["TEACHER_ERROR", "EXECUTION"]
    wrong = TeacherTrace(cot_text=COT_WRONG_ANSWER, teacher_answer="70", correct=False, trace_id=8)
    failure = run(trace=wrong).detail["failures"][0]
    assert failure == {"check": "teacher_answer", "specialist": "teacher", "trace_id": 8,
                       "predicted": "70", "reference": "72"}
    right = TeacherTrace(cot_text=COT_RIGHT, teacher_answer="72", correct=True)
    assert run(trace=right).category == "EXECUTION"


def test_teacher_verdict_computed_when_unset() -> None:
    assert run(trace=TeacherTrace(COT_WRONG_ANSWER, "70", None)).category == "TEACHER_ERROR"
    assert run(trace=TeacherTrace(COT_RIGHT, "72.0", None)).category == "EXECUTION"


def test_precedence_first_that_fires_wins() -> None:
    """With faults for every category from k on, category k is the verdict and the rest are 'also'."""
    traces = {"ANSWER_NOT_IN_COT": TeacherTrace(COT_NO_GOLD, "68", False),
              "TEACHER_ERROR": TeacherTrace(COT_WRONG_ANSWER, "70", False)}
    for k, expected in enumerate(CATEGORIES):
        faulty = CATEGORIES[k:]
        pred = prediction()
        for category in faulty:
            if category in PIPELINE_FAULTS:
                PIPELINE_FAULTS[category](pred)
        trace = next((traces[c] for c in faulty if c in traces), TeacherTrace(COT_RIGHT, "72", True))
        outcome = WRONG_IN_BEAM if "SELECTION" in faulty else WRONG
        verdict = run(pred, trace=trace, outcome=outcome)
        assert verdict.category == expected, (k, verdict.detail)
        expected_also = [c for c in faulty[1:] if c != "TEACHER_ERROR" or expected == "ANSWER_NOT_IN_COT"]
        assert verdict.detail["also"] == expected_also


def test_no_reference_is_a_distinct_outcome_not_a_guess() -> None:
    empty = {t: None for t in ("C1", "C2", "C3", "C4", "C5", "C6")}
    verdict = run(ref=empty)
    assert (verdict.category, verdict.outcome, verdict.detail["outcome"]) == (None, NO_REFERENCE, NO_REFERENCE)
    # teacher-side categories need no reference labels
    assert run(ref=empty, trace=TeacherTrace(COT_WRONG_ANSWER, "70", False)).category == "TEACHER_ERROR"
    assert run(ref=empty, outcome=Outcome("72", True)).outcome == "CORRECT"


def test_missing_prediction_skips_its_check() -> None:
    pred = prediction()
    del pred["C1"]
    verdict = run(pred)
    assert verdict.category == "EXECUTION"
    assert verdict.detail["missing_predictions"] == ["C1"]


def test_alignment_follows_operands_not_positions() -> None:
    """Independent steps computed in the other order align by operands; step refs map through it."""
    def op(value: str) -> dict:
        return {"kind": "problem", "value": value, "start": 0, "end": 1, "reading": "literal"}

    ref = {"C3": {"steps": [
        {"step": 1, "op": "MUL", "operands": [op("3"), op("4")]},
        {"step": 2, "op": "MUL", "operands": [op("5"), op("6")]},
        {"step": 3, "op": "ADD", "operands": [{"kind": "step", "ref": 1}, {"kind": "step", "ref": 2}]},
    ]}, "C6": {"answer_step": 3, "n_steps": 3, "answer_type": "integer"}}
    pred = {"C3": {"steps": [ref["C3"]["steps"][1] | {"step": 1}, ref["C3"]["steps"][0] | {"step": 2},
                             ref["C3"]["steps"][2]]}, "C6": ref["C6"]}
    assert align_steps(read_program(pred).steps, read_program(ref).steps).pairs == ((2, 1), (1, 2), (3, 3))
    assert run(pred, ref).category == "EXECUTION"
    pred["C3"]["steps"][2] = {"step": 3, "op": "ADD", "operands": [{"kind": "step", "ref": 1}, {"kind": "step", "ref": 1}]}
    verdict = run(pred, ref)
    assert (verdict.category, verdict.specialist) == ("DEPENDENCY", "C3")
    assert verdict.detail["failures"] == [  # no C5 here: the edges are C3's step operands
        {"check": "edges", "specialist": "C3", "missing": [[1, 3]], "extra": []},
        {"check": "step_operands", "specialist": "C3", "step": 3, "predicted_step": 3,
         "predicted": [2, 2], "reference": [1, 2]},
    ]


def test_region_tolerance() -> None:
    assert match_regions([(0, 10)], [(0, 10)]).matches
    assert match_regions([(1, 10), (20, 29)], [(0, 10), (20, 30)]).matches  # a char off at either end
    half = int(10 * REGION_MIN_COVERAGE)
    assert match_regions([(0, half)], [(0, 10)]).matches  # exactly the tolerance
    assert not match_regions([(0, half - 1)], [(0, 10)]).matches
    assert match_regions([(0, 10), (30, 40)], [(0, 10)]).precision == 0.5  # half spurious: still matches
    assert not match_regions([(0, 10), (30, 45)], [(0, 10)]).matches  # mostly spurious
    assert not match_regions([], [(0, 10)]).matches and match_regions([], []).matches
    first_only = match_regions([FIRST], [FIRST, SECOND])
    assert first_only.missed == (SECOND,) and first_only.coverage == (1.0, 0.0)


def test_answer_in_text() -> None:
    assert answer_in_text("72", "so 48 + 24 = 72 clips")
    assert not answer_in_text("7", "the total is 17 and 70")
    assert answer_in_text("1000", "she has $1,000.")
    assert answer_in_text("\\frac{3}{4}", "so x = \\boxed{\\dfrac{3}{4}}")
    assert answer_in_text("(1, 2)", "the point is $(1,2)$")
    assert not answer_in_text("\\sqrt{2}", "x = 3")


def test_refined_alignment_separates_steps_that_read_the_same_numbers() -> None:
    """Steps 2 and 3 both read a 2 and an earlier step; only the step pointers tell them apart.
    Renumbering the program (same content) must still align every step and fire nothing."""
    def num(value: str) -> dict:
        return {"kind": "problem", "value": value, "start": 0, "end": 1, "reading": "literal"}

    def step(ref: int) -> dict:
        return {"kind": "step", "ref": ref}

    steps = [("MUL", [num("2"), num("4")]), ("MUL", [num("2"), step(1)]), ("MUL", [step(2), num("2")]),
             ("ADD", [num("4"), step(1), step(2), step(3)])]
    ref = {"C3": {"steps": [{"step": i + 1, "op": op, "operands": ops} for i, (op, ops) in enumerate(steps)]},
           "C5": {"n_steps": 4, "edges": [[1, 2], [1, 4], [2, 3], [2, 4], [3, 4]]},
           "C6": {"answer_step": 4, "n_steps": 4, "answer_type": "integer"}}
    new = {1: 2, 2: 4, 3: 3, 4: 1}  # reference id → predicted id
    pred = {"C3": {"steps": sorted(({"step": new[s["step"]], "op": s["op"],
                                     "operands": [step(new[o["ref"]]) if o["kind"] == "step" else o for o in s["operands"]]}
                                    for s in ref["C3"]["steps"]), key=lambda s: s["step"])},
            "C5": {"n_steps": 4, "edges": [[new[i], new[j]] for i, j in ref["C5"]["edges"]]},
            "C6": {"answer_step": new[4], "n_steps": 4, "answer_type": "integer"}}
    verdict = run(pred, ref)
    assert verdict.category == "EXECUTION", verdict.detail.get("failures")
    assert sorted(verdict.detail["alignment"]) == sorted([p, r] for r, p in new.items())
