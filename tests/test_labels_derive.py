"""Pure label derivation: hand-checked C1–C6 payloads, readings, answer types, defects."""

from __future__ import annotations

import copy

import pytest

from app.execution.validate import validate_solution
from app.labels.derive import LabelError, answer_type, derive_labels
from app.labels.parse import clause_tables
from app.signals.clauses import expand_to_clauses

NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
NATALIA_COT = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.")
WENG = ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?")
WENG_COT = ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
            "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.")
BETTY = ("Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
         "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her "
         "parents. How much more money does Betty need to buy the wallet?")
BETTY_COT = ("In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\n"
             "Betty's grandparents gave her 15 * 2 = $<<15*2=30>>30.\n"
             "This means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.")


def _labels(text: str, cot: str, gold: str, trace_regions=()):  # noqa: ANN001, ANN202
    program = validate_solution(text, cot, gold, "gsm8k")
    assert program.correct
    (table,) = clause_tables([text])
    return program.program, derive_labels(text, program.program, gold, table, trace_regions)


def test_natalia_all_tasks() -> None:
    _, labels = _labels(NATALIA, NATALIA_COT, "72")
    assert labels["C1"] == {"regions": [[0, 48], [59, 93]], "operand_spans": [[22, 24], [68, 72]]}
    assert [NATALIA[s:e] for s, e in labels["C1"]["regions"]] == [
        "Natalia sold clips to 48 of her friends in April", "she sold half as many clips in May"]
    assert labels["C2"] == {"steps": [{"step": 1, "op": "DIV", "region": [0, 93]},
                                      {"step": 2, "op": "ADD", "region": [0, 48]}]}
    assert labels["C3"] == {"steps": [
        {"step": 1, "op": "DIV", "operands": [
            {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"},
            {"kind": "problem", "start": 68, "end": 72, "value": "2", "reading": "reciprocal"}]},
        {"step": 2, "op": "ADD", "operands": [
            {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"},
            {"kind": "step", "ref": 1}]}]}
    assert labels["C4"] == {"constants": []}
    assert labels["C5"] == {"n_steps": 2, "edges": [[1, 2]]}
    assert labels["C6"] == {"answer_step": 2, "n_steps": 2, "answer_type": "integer"}


def test_weng_implicit_constant_60() -> None:
    _, labels = _labels(WENG, WENG_COT, "10")
    assert labels["C3"]["steps"][0] == {"step": 1, "op": "DIV", "operands": [
        {"kind": "problem", "start": 11, "end": 14, "value": "12", "reading": "literal"},
        {"kind": "constant", "value": "60"}]}
    assert WENG[11:14] == "$12"
    assert labels["C4"] == {"constants": ["60"]}
    assert labels["C5"] == {"n_steps": 2, "edges": [[1, 2]]}
    assert labels["C6"] == {"answer_step": 2, "n_steps": 2, "answer_type": "integer"}
    assert [WENG[s:e] for s, e in labels["C1"]["regions"]] == [
        "Weng earns $12 an hour for babysitting", "Yesterday, she just did 50 minutes of babysitting"]


def test_betty_twice_is_grounded_on_twice_not_half() -> None:
    _, labels = _labels(BETTY, BETTY_COT, "5")
    steps = labels["C3"]["steps"]
    assert [s["op"] for s in steps] == ["DIV", "MUL", "SUB"]
    halve, double = steps[0]["operands"][1], steps[1]["operands"][1]
    assert (BETTY[halve["start"]:halve["end"]], halve["value"], halve["reading"]) == ("half", "2", "reciprocal")
    assert (BETTY[double["start"]:double["end"]], double["value"], double["reading"]) == ("twice", "2", "literal")
    assert steps[2]["operands"][1:3] == [{"kind": "step", "ref": 1}, {"kind": "step", "ref": 2}]
    assert labels["C5"] == {"n_steps": 3, "edges": [[1, 3], [2, 3]]}
    assert labels["C6"] == {"answer_step": 3, "n_steps": 3, "answer_type": "integer"}
    assert labels["C4"] == {"constants": []}
    assert labels["C1"]["operand_spans"] == [[51, 55], [72, 76], [133, 136], [176, 181]]


def test_c1_matches_clause_expansion_and_unites_trace_regions() -> None:
    _, labels = _labels(NATALIA, NATALIA_COT, "72", trace_regions=[(114, 121), (100, 104)])
    assert expand_to_clauses(NATALIA, [(22, 24), (68, 72)]) == [(0, 48), (59, 93)]
    assert labels["C1"]["regions"] == [[0, 48], [59, 93], [100, 104], [114, 121]]
    assert labels["C1"]["operand_spans"] == [[22, 24], [68, 72]]  # trace regions are not operands


def test_constants_sorted_by_value_and_empty_list_is_a_label() -> None:
    text = "A trip takes 3 hours."
    program = {"steps": [
        {"id": 1, "op": "MUL", "operands": [{"kind": "problem", "value": "3", "start": 13, "end": 14},
                                            {"kind": "constant", "value": "60"}], "result": "180"},
        {"id": 2, "op": "DIV", "operands": [{"kind": "step", "ref": 1}, {"kind": "constant", "value": "12"},
                                            {"kind": "constant", "value": "0.5"}], "result": "30"}],
        "answer_step": 2}
    (table,) = clause_tables([text])
    labels = derive_labels(text, program, "30", table)
    assert labels["C4"] == {"constants": ["0.5", "12", "60"]}
    assert labels["C3"]["steps"][0]["operands"][0]["reading"] == "literal"  # inferred when not stored


def test_percent_reading() -> None:
    text = "A $50 shirt is 20% off."
    _, labels = _labels(text, "The discount is 50*20% = $<<50*20/100=10>>10.", "10")
    operands = [o for s in labels["C3"]["steps"] for o in s["operands"] if o["kind"] == "problem"]
    assert {(text[o["start"]:o["end"]], o["reading"]) for o in operands} >= {("$50", "literal")}


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["steps"][0]["operands"][0].update(start=0, end=7), "is not a number mention"),
    (lambda p: p["steps"][0]["operands"][0].update(value="47"), "'47' is not '48' read as 'literal'"),
    (lambda p: p["steps"][0]["operands"][0].update(value="47", reading=None), "does not come from"),
    (lambda p: p["steps"][0]["operands"][1].update(reading="literal"), "read as 'literal'"),
    (lambda p: p["steps"][0].update(op="EVAL"), "malformed program"),
    (lambda p: (p["steps"][1].update(id=5), p.update(answer_step=5)), "not 1..2"),
    (lambda p: p.update(answer_step=None), "no answer_step"),
])
def test_defective_programs_raise_label_error(mutate, message: str) -> None:  # noqa: ANN001
    program, _ = _labels(NATALIA, NATALIA_COT, "72")
    broken = copy.deepcopy(program)
    mutate(broken)
    (table,) = clause_tables([NATALIA])
    with pytest.raises(LabelError, match=message):
        derive_labels(NATALIA, broken, "72", table)


@pytest.mark.parametrize(("gold", "expected"), [
    ("36", "integer"), ("1,000", "integer"), ("-3", "negative"), ("3.5", "decimal"), ("\\$3.54", "decimal"),
    ("\\frac{2}{5}", "fraction"), ("-\\frac{2}{5}", "negative"), ("\\dfrac{1}{29,\\!322,\\!216}", "fraction"),
    ("3\\sqrt{5}", "radical"), ("\\frac{\\pi}{2}", "radical"), ("(-\\infty, 1)\\cup(1, \\infty)", "interval"),
    ("[-3, 2)", "interval"), ("(-4,4)", "tuple"), ("-2, 2", "tuple"), ("\\text{Sunday}", "text"),
    ("-3x^2 +9x -11", "expression"), ("50\\%", "integer"), ("30^\\circ", "integer"), ("0", "integer"),
])
def test_answer_types(gold: str, expected: str) -> None:
    assert answer_type(gold) == expected
