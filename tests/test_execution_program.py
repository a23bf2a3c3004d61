"""Programs: building from computations, operand resolution, JSON round trip, validation."""

from __future__ import annotations

import json

import pytest
import sympy

from app.execution.errors import InvalidProgram, TooComplex
from app.execution.executor import execute_program
from app.execution.program import (
    Operand, Program, Step, build_program, program_from_json, program_to_json, rational_text,
)
from app.execution.text_steps import find_computations

NATALIA_PROBLEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                   "clips in May. How many clips did Natalia sell altogether in April and May?")
NATALIA_COT = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.")


def _build(problem: str, cot: str) -> Program:
    return build_program(problem, find_computations(cot))


def test_natalia_program_json_shape() -> None:
    program = _build(NATALIA_PROBLEM, NATALIA_COT)
    assert program_to_json(program) == {
        "steps": [
            {"id": 1, "op": "DIV",
             "operands": [{"kind": "problem", "value": "48", "start": 22, "end": 24, "reading": "literal"},
                          {"kind": "problem", "value": "2", "start": 68, "end": 72, "reading": "reciprocal"}],
             "result": "24", "text": "48/2=24", "source": "annotation"},
            {"id": 2, "op": "ADD",
             "operands": [{"kind": "problem", "value": "48", "start": 22, "end": 24, "reading": "literal"},
                          {"kind": "step", "ref": 1}],
             "result": "72", "text": "48+24=72", "source": "annotation"},
        ],
        "answer_step": 2,
    }
    assert NATALIA_PROBLEM[22:24] == "48" and NATALIA_PROBLEM[68:72] == "half"
    assert program.dependency_edges() == [(1, 2)]


def test_json_round_trip_is_exact_and_serialisable() -> None:
    program = _build(NATALIA_PROBLEM, NATALIA_COT)
    data = json.loads(json.dumps(program_to_json(program)))
    assert program_from_json(data) == program
    assert execute_program(program_from_json(data)).answer == 72


def test_mixed_operations_split_into_one_step_per_operation() -> None:
    program = _build("The scores were 12, 36 and 72.", "The average is (12+36+72)/3=40")
    assert [(step.op, step.result) for step in program.steps] == [("ADD", "120"), ("DIV", "40")]
    assert program.steps[1].operands[0] == Operand("step", ref=1)
    assert program.steps[1].operands[1] == Operand("constant", value="3")
    assert all(step.text == "(12+36+72)/3=40" for step in program.steps)


def test_percent_operands_keep_their_problem_span() -> None:
    problem = "A $50 shirt is 20% off."
    program = _build(problem, "The discount is 50*20% = $10.")
    (step,) = program.steps
    assert step.op == "MUL" and step.result == "10"
    assert step.operands == (Operand("problem", value="50", start=2, end=5, reading="literal"),
                             Operand("problem", value="20%", start=15, end=18, reading="percent"))


def test_percent_result_gets_a_to_percent_step() -> None:
    program = _build("60% and 40%", "60% * 40% = 24%")
    assert [step.op for step in program.steps] == ["MUL", "TO_PERCENT"]
    assert execute_program(program).answer == 24


def test_equation_step_is_resolved_from_its_operands() -> None:
    program = _build("The total is 117.", "Let s be the price.\n9s = 117\nSo s = 13.")
    assert [step.op for step in program.steps] == ["EQUATION", "SELECT"]
    equation = program.steps[0]
    assert equation.text == "9s = 117"
    assert equation.operands == (Operand("constant", value="9"),
                                 Operand("problem", value="117", start=13, end=16, reading="literal"))
    assert execute_program(program).answer == 13


def test_known_unknown_is_substituted_not_resolved_again() -> None:
    program = _build("Carla won twice as many of the 30 games as Frankie.",
                     "x+2*x=30\nx=<<10=10>>10\n2x=20 games")
    # "x=<<10=10>>10" restates the step just computed: no SELECT is added for it
    assert [step.op for step in program.steps] == ["EQUATION", "MUL"]
    assert program.steps[1].operands == (Operand("problem", value="2", start=10, end=15, reading="literal"),  # "twice"
                                         Operand("step", ref=1))
    assert execute_program(program).answer == 20


def test_literal_mention_preferred_over_operator_word_reading() -> None:
    problem = ("Betty needs $100. She has only half of the money. Her parents gave her $15, "
               "and her grandparents twice as much as her parents.")
    program = _build(problem, "Her grandparents gave her 15 * 2 = $<<15*2=30>>30.")
    fifteen, two = program.steps[0].operands
    assert problem[fifteen.start:fifteen.end] == "$15" and fifteen.reading == "literal"
    assert problem[two.start:two.end] == "twice" and two.reading == "literal"  # not "half" read as /2
    halved = _build(problem, "She has 100 / 2 = $<<100/2=50>>50.").steps[0].operands[1]
    assert (problem[halved.start:halved.end], halved.value, halved.reading) == ("half", "2", "reciprocal")
    quarter = _build("Cut 4 pies for 3 kids.", "They get 3*0.25 = <<3*0.25=0.75>>0.75 pie.").steps[0]
    assert quarter.operands[1] == Operand("constant", value="0.25")  # 1/4 is not a reading of "4"


def test_integer_fraction_text_is_a_division_when_that_grounds_it() -> None:
    problem = "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting."
    program = _build(problem, "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
                              "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.")
    assert [step.op for step in program.steps] == ["DIV", "MUL"]
    assert program.steps[0].operands == (Operand("problem", value="12", start=11, end=14, reading="literal"),
                                         Operand("constant", value="60"))
    assert program.steps[1].operands[0] == Operand("step", ref=1)
    kept = _build("She ate 3/4 of the 8 pies.", "3/4*8 = <<3/4*8=6>>6").steps[0].operands
    assert kept[0] == Operand("problem", value="0.75", start=8, end=11, reading="literal")  # not DIV(3, 4)


def test_rounded_written_results_link_to_the_exact_step() -> None:
    program = _build("Split 10 dollars 3 ways.", "10/3 = <<10/3=3.33>>3.33 each, so 3.33*3=<<3.33*3=10>>10")
    assert program.steps[1].operands[0] == Operand("step", ref=1)
    assert execute_program(program).answer == 10


def test_unevaluable_computations_are_skipped() -> None:
    program = _build("", "a = <<5/0=1>>1 and <<2*3=6>>6")
    assert [step.op for step in program.steps] == ["MUL"]


def test_rational_text() -> None:
    assert [rational_text(sympy.Rational(*pair)) for pair in [(24, 1), (7, 2), (1, 3), (-1, 8), (1, 40)]] \
        == ["24", "3.5", "1/3", "-0.125", "0.025"]


@pytest.mark.parametrize("bad", [
    None,
    {"steps": "nope"},
    {"steps": [{"id": 1, "op": "EVAL", "operands": [], "result": "", "text": "", "source": "annotation"}]},
    {"steps": [{"id": 1, "op": "ADD", "operands": [{"kind": "step", "ref": 1}], "result": "",
                "text": "", "source": "annotation"}]},
    {"steps": [{"id": 1, "op": "ADD", "operands": [{"kind": "constant", "value": "__import__('os')"}],
                "result": "", "text": "", "source": "annotation"}]},
    {"steps": [{"id": 1, "op": "ADD", "operands": [{"kind": "problem", "value": "1"}],
                "result": "", "text": "", "source": "annotation"}]},
    {"steps": [], "answer_step": 3},
])
def test_malformed_program_json_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidProgram):
        program_from_json(bad)


def test_too_many_steps_is_rejected() -> None:
    step = {"id": 0, "op": "ADD", "operands": [{"kind": "constant", "value": "1"}] * 2,
            "result": "2", "text": "", "source": "arithmetic"}
    data = {"steps": [dict(step, id=index) for index in range(10_000)], "answer_step": 0}
    with pytest.raises(TooComplex):
        program_from_json(data)


def test_program_dataclasses_are_frozen() -> None:
    step = Step(1, "ADD", (), "0", "", "arithmetic")
    with pytest.raises(AttributeError):
        step.op = "SUB"  # type: ignore[misc]
