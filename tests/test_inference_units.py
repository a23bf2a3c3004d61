"""Units of number mentions and of candidate programs (app.inference.units), on a real spaCy parse."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from app.inference.selector import FEATURES, RankingInputs
from app.inference.units import DIMENSIONLESS, problem_units, program_units, unit_checks, unit_kind
from training.examples import mentions_of

CARRIE = ("Carrie wants to buy a new iPhone. The new iPhone costs $800. She can trade in her Samsung Galaxy "
          "for $240. She can make $80 per week babysitting. How many weeks does she have to work before she "
          "can purchase the iPhone?")
TOMMY = "Tommy wants to buy 8 new books. Each book costs $5. If Tommy already has $13, how much does he need to save up?"
HALLIE = "She sells 3 of her paintings for $50 each. She also won a $150 prize. How much money does she make?"


def step(op: str, *operands: tuple) -> SimpleNamespace:
    return SimpleNamespace(op=op, operands=operands)


def literal(i: int) -> tuple:
    return ("problem", i, "literal")


def test_mention_units_money_rates_counts_and_pure_numbers() -> None:
    units = problem_units(CARRIE, mentions_of(CARRIE))
    assert units.mentions == ((("$", 1),), (("$", 1),), (("$", 1), ("week", -1)))
    assert units.asked == (("week", 1),)
    tommy = problem_units(TOMMY, mentions_of(TOMMY))
    assert tommy.mentions == ((("book", 1),), (("$", 1), ("book", -1)), (("$", 1),))  # "Each book costs $5"
    assert tommy.asked == (("$", 1),)  # "how much … save"
    hallie = problem_units(HALLIE, mentions_of(HALLIE))
    assert hallie.mentions[1] == (("$", 1), ("painting", -1))  # "$50 each" distributes over the paintings
    text = "David broke 2 glasses and William broke 4 times as many. Half of them were blue. How many glasses broke?"
    david = problem_units(text, mentions_of(text))
    assert david.mentions[0] == (("glass", 1),)
    assert david.mentions[1] == DIMENSIONLESS and david.mentions[2] == DIMENSIONLESS  # "4 times", "Half"


def test_program_units_cancel_rates_and_count_conflicts() -> None:
    units = problem_units(CARRIE, mentions_of(CARRIE))
    right = [step("SUB", literal(0), literal(1)), step("DIV", ("step", 0), literal(2))]  # (800 − 240) / 80
    per_step, conflicts = program_units(right, units)
    assert per_step == [(("$", 1),), (("week", 1),)] and conflicts == 0
    assert unit_checks(right, units) == (0.0, 1.0, 0.0, 0.0)
    wrong = [step("ADD", literal(1), literal(2)), step("SUB", literal(0), ("step", 0))]  # 800 − (240 + 80/week)
    assert unit_checks(wrong, units) == (1.0, 0.0, 1.0, 1.0)  # dollars + dollars per week; answer in dollars
    tommy = problem_units(TOMMY, mentions_of(TOMMY))
    cost = [step("MUL", literal(0), literal(1)), step("SUB", ("step", 0), literal(2))]  # 8 × $5/book − $13
    assert program_units(cost, tommy) == ([(("$", 1),), (("$", 1),)], 0)
    # a constant the program writes has no unit; a reciprocal reading is a pure number
    assert program_units([step("MUL", literal(0), ("constant", 3))], tommy)[0] == [None]
    assert program_units([step("MUL", literal(0), ("problem", 2, "reciprocal"))], tommy)[0] == [(("book", 1),)]
    assert unit_kind((("$", 1),)) == "money" and unit_kind((("$", 1), ("week", -1))) == "rate"
    assert unit_kind(()) == "pure" and unit_kind(None) is None and unit_kind((("lion", 1),)) == "count"
    zoo = "She saw 3 lions and 2 elephants. How many animals did she see?"
    animals = problem_units(zoo, mentions_of(zoo))
    assert program_units([step("ADD", literal(0), literal(1))], animals) == ([None], 0)  # counts add up


def test_unit_features_reach_the_selector() -> None:
    units = problem_units(CARRIE, mentions_of(CARRIE))
    member = lambda steps: SimpleNamespace(path=SimpleNamespace(steps=steps, n_steps=len(steps), n_steps_p=0.9,
                                                                 values=(), score=0.1), score=0.1)
    right = [SimpleNamespace(op="SUB", op_p=0.5, operands=(literal(0), literal(1)), operand_ps=(0.5, 0.5)),
             SimpleNamespace(op="DIV", op_p=0.5, operands=(("step", 0), literal(2)), operand_ps=(0.5, 0.5))]
    wrong = [SimpleNamespace(op="ADD", op_p=0.5, operands=(literal(1), literal(2)), operand_ps=(0.5, 0.5)),
             SimpleNamespace(op="SUB", op_p=0.5, operands=(literal(0), ("step", 0)), operand_ps=(0.5, 0.5))]
    from fractions import Fraction

    groups = [SimpleNamespace(mass=0.2, value=Fraction(480), members=[member(wrong)]),
              SimpleNamespace(mass=0.1, value=Fraction(7), members=[member(right)])]
    values = [Fraction(800), Fraction(240), Fraction(80)]
    with_units = RankingInputs(groups, 2, values, [0.9, 0.9, 0.9], units).features()
    without = RankingInputs(groups, 2, values, [0.9, 0.9, 0.9]).features()
    columns = [FEATURES.index(name) for name in ("unit_conflicts", "unit_match", "unit_mismatch")]
    assert with_units[:, columns].tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert not without[:, columns].any()
    others = [i for i in range(len(FEATURES)) if not FEATURES[i].startswith("unit_")]
    assert np.array_equal(with_units[:, others], without[:, others])
