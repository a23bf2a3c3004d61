"""The gold-blind search on hand-made distributions (no model, no database)."""

from __future__ import annotations

import pytest

from app.inference.search import (
    NO_CONSISTENT, NO_NUMBERS, SearchConfig, collapse, plan_requests, search_with, value_answer_types,
)
from app.inference.solve import solve
from tests.inference_helpers import BETTY, NATALIA, FakeSpecialists, TableOperands, betty, make_proposal, natalia


def test_collapse_takes_the_top_choice_above_theta_else_top_k():
    dist = [("a", 0.1), ("b", 0.86), ("c", 0.04)]
    assert collapse(dist, 0.85, 3) == [("b", 0.86)]
    assert collapse(dist, 0.9, 2) == [("b", 0.86), ("a", 0.1)]
    assert collapse(dist, 0.0, 3) == [("b", 0.86)]
    assert collapse([("a", 0.5), ("b", 0.0)], 1.0, 3) == [("a", 0.5)]


def test_natalia_recovers_48_div_2_then_48_plus_24():
    proposal, c3 = natalia()
    result = search_with(proposal, c3)
    assert result.answer == "72"
    steps = result.program["steps"]
    assert [s["op"] for s in steps] == ["DIV", "ADD"]
    assert steps[0]["operands"] == [{"kind": "problem", "value": "48", "start": 22, "end": 24},
                                    {"kind": "problem", "value": "2", "start": 68, "end": 72}]
    assert steps[0]["result"] == "24" and steps[0]["text"] == "48/2=24"
    assert steps[1]["operands"] == [{"kind": "problem", "value": "48", "start": 22, "end": 24},
                                    {"kind": "step", "ref": 1}]
    assert steps[1]["text"] == "48+24=72" and result.program["answer_step"] == 2
    assert NATALIA[22:24] == "48" and NATALIA[68:72] == "half"
    # C3 was asked once, for every (slot, op) the collapsed C2 kept.
    assert len(c3.calls) == 1
    assert {(r.slot, r.op) for r in c3.calls[0]} == {(0, "DIV"), (0, "MUL"), (0, "ADD"), (1, "ADD"),
                                                      (1, "SUB"), (1, "MUL")}
    assert 0 < result.probability <= 1
    assert result.candidates[0]["answer"] == "72"
    assert result.disagreement is True  # e.g. 48-24 = 24 is also in the beam


def test_betty_recovers_the_three_step_program():
    proposal, c3 = betty()
    result = search_with(proposal, c3)
    assert result.answer == "5"
    steps = result.program["steps"]
    assert [s["op"] for s in steps] == ["DIV", "MUL", "SUB"]
    assert [s["result"] for s in steps] == ["50", "30", "5"]
    assert steps[2]["operands"] == [{"kind": "problem", "value": "100", "start": 51, "end": 55},
                                    {"kind": "step", "ref": 1}, {"kind": "step", "ref": 2},
                                    {"kind": "problem", "value": "15", "start": 133, "end": 136}]
    assert BETTY[133:136] == "$15"


def test_theta_one_explores_more_paths_than_theta_zero():
    proposal, c3 = natalia()
    greedy = search_with(proposal, c3, SearchConfig(theta=0.0))
    wide = search_with(proposal, c3, SearchConfig(theta=1.0))
    default = search_with(proposal, c3, SearchConfig())
    assert greedy.paths_explored == 1 and greedy.disagreement is False
    assert greedy.answer == "72"  # the argmax path is already right here
    assert wide.paths_explored > default.paths_explored > greedy.paths_explored
    assert wide.paths_explored <= 100
    assert len(plan_requests(proposal, SearchConfig(theta=0.0)).requests) == 2


def test_path_cap_bounds_the_paths_explored():
    proposal, c3 = betty()
    capped = search_with(proposal, c3, SearchConfig(theta=1.0, max_paths=7))
    assert 1 <= capped.paths_explored <= 7 + capped.dropped["failed"] and len(capped.candidates) <= 7


def test_answer_type_filter_drops_inconsistent_answers():
    # Top path: 48 / 5 (a fraction) but C6 is sure the answer is an integer → 48 * 5 wins.
    text = "A box holds 48 pens and 5 pencils."
    proposal = make_proposal(text, {1: 1.0}, [{"DIV": 0.7, "MUL": 0.3}],
                             answer_type={"integer": 0.95, "fraction": 0.05})
    c3 = TableOperands({(0, "DIV"): [{("problem", 0, "literal"): 1.0}, {("problem", 1, "literal"): 1.0}, {("end",): 1.0}],
                        (0, "MUL"): [{("problem", 0, "literal"): 1.0}, {("problem", 1, "literal"): 1.0}, {("end",): 1.0}]})
    result = search_with(proposal, c3)
    assert result.answer == "240" and result.dropped == {"failed": 0, "type": 1}
    # Only the fraction in the beam → a clear "no answer", not a wrong-typed guess.
    only_div = make_proposal(text, {1: 1.0}, [{"DIV": 1.0}], answer_type={"integer": 1.0})
    none = search_with(only_div, c3)
    assert none.answer is None and none.no_answer_reason == NO_CONSISTENT


def test_failing_programs_are_dropped():
    text = "Split 12 apples among 0 children or 3 children."
    proposal = make_proposal(text, {1: 1.0}, [{"DIV": 1.0}])
    c3 = TableOperands({(0, "DIV"): [{("problem", 0, "literal"): 1.0},
                                     {("problem", 1, "literal"): 0.6, ("problem", 2, "literal"): 0.4},
                                     {("end",): 1.0}]})
    result = search_with(proposal, c3)
    assert result.answer == "4" and result.dropped["failed"] == 1


def test_equivalent_answers_pool_their_probability():
    proposal, c3 = natalia()
    result = search_with(proposal, c3, SearchConfig(theta=1.0))
    answers = [c["answer"] for c in result.candidates]
    assert len(answers) == len(set(answers))  # one entry per distinct answer
    assert sum(c["paths"] for c in result.candidates) + sum(result.dropped.values()) == result.paths_explored


def test_value_answer_types():
    import sympy
    assert value_answer_types(sympy.Integer(3)) == {"integer"}
    assert value_answer_types(sympy.Integer(-3)) == {"integer", "negative"}
    assert value_answer_types(sympy.Rational(1, 2)) == {"decimal", "fraction"}
    assert value_answer_types(2 * sympy.sqrt(3)) == {"radical"}


def test_no_numbers_gives_a_clear_no_answer():
    solutions = solve(["What is the capital of France?"], FakeSpecialists())
    assert solutions[0].answer is None
    assert solutions[0].no_answer_reason == NO_NUMBERS
    assert solutions[0].paths_explored == 0 and solutions[0].program is None
    assert set(solutions[0].predictions) == {"C1", "C2", "C3", "C4", "C5", "C6"}


def test_solve_takes_texts_and_models_only_and_fills_predictions():
    specialists = FakeSpecialists({NATALIA: natalia(), BETTY: betty()})
    first, second = solve([NATALIA, BETTY], specialists)
    assert (first.answer, second.answer) == ("72", "5")
    assert first.model_version == "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"
    assert first.predictions["C2"]["steps"][0]["op"] == "DIV"
    assert first.predictions["C3"]["steps"][0]["operands"][1] == {
        "kind": "problem", "start": 68, "end": 72, "value": "2", "reading": "reciprocal"}
    assert first.predictions["C5"]["edges"] == [[1, 2]]
    assert first.predictions["C6"]["answer_step"] == 2 and first.predictions["C6"]["answer_type"] == "integer"
    assert first.ms > 0


@pytest.mark.parametrize("theta", [-0.1, 1.5])
def test_config_rejects_bad_theta(theta):
    with pytest.raises(ValueError):
        SearchConfig(theta=theta)


@pytest.mark.parametrize("make", [natalia, betty])
def test_incremental_execution_agrees_with_the_safe_executor_on_every_candidate(make):
    proposal, c3 = make()
    fast = search_with(proposal, c3, SearchConfig(theta=1.0))
    checked = search_with(proposal, c3, SearchConfig(theta=1.0, verify_all=True))  # asserts per path
    assert fast.candidates == checked.candidates and fast.program == checked.program


def test_step_value_uses_the_executor_semantics_beyond_arithmetic():
    from fractions import Fraction

    from app.execution.errors import DivisionByZero
    from app.inference.search import step_value

    leaf = {("constant", "2"): Fraction(2), ("constant", "0"): Fraction(0), ("constant", "8"): Fraction(8)}.__getitem__
    assert step_value("POW", [("constant", "2"), ("constant", "8")], (), leaf) == Fraction(256)
    assert str(step_value("SQRT", [("constant", "8")], (), leaf)) == "2*sqrt(2)"
    with pytest.raises(DivisionByZero):
        step_value("DIV", [("constant", "8"), ("constant", "0")], (), leaf)


def test_degenerate_steps_and_c1_coverage_shape_the_scores():
    from app.inference.search import operand_lists

    dist = [{("problem", 0, "literal"): 0.6, ("problem", 1, "literal"): 0.4},
            {("problem", 0, "literal"): 0.6, ("problem", 1, "literal"): 0.4}, {("end",): 1.0}]
    # SUB(x, x) = 0 is never proposed; ADD(x, x) is, at duplicate_factor times its probability.
    subs = operand_lists(dist, 0, "SUB", 2, SearchConfig(theta=1.0))
    assert all(len(set(ops)) == len(ops) for ops, _, _ in subs)
    adds = {ops: score for ops, _, score in operand_lists(dist, 0, "ADD", 2, SearchConfig(theta=1.0))}
    assert adds[(("problem", 0, "literal"),) * 2] == pytest.approx(0.36 * 0.1)
    # C1 says mention 1 ("5") matters: the program that uses it wins over 48 + 48.
    text = "Tom has 48 apples and buys 5 more."
    proposal = make_proposal(text, {1: 1.0}, [{"ADD": 1.0}])
    proposal.relevance[:] = 0.95
    c3 = TableOperands({(0, "ADD"): dist})
    assert search_with(proposal, c3, SearchConfig(theta=1.0, duplicate_factor=1.0)).answer == "53"


class PrefixOperands:
    """C3 that reads the prefix: after a step that halved 48, slot 1 adds 48 and that step."""

    def __init__(self):
        self.calls: list = []

    def __call__(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            if r.slot == 0:
                out.append([{("problem", 0, "literal"): 0.9, ("problem", 1, "literal"): 0.1},
                            {("problem", 1, "reciprocal"): 0.9, ("problem", 1, "literal"): 0.1},
                            {("end",): 1.0}])
            elif r.prefix and r.prefix[-1].operands == (("problem", 0, "literal"), ("problem", 1, "reciprocal")):
                out.append([{("problem", 0, "literal"): 0.9, ("step", r.slot - 1): 0.1},
                            {("step", r.slot - 1): 0.9, ("problem", 0, "literal"): 0.1}, {("end",): 1.0}])
            else:  # any other prefix: a distractor that reads step 0 twice
                out.append([{("step", 0): 1.0}, {("step", 0): 1.0}, {("end",): 1.0}])
        return out


def _stop_when_every_number_is_read(calls):
    def stops(prefixes):
        if prefixes:
            calls.append(list(prefixes))
        read = [{c[1] for step in p for c in step.operands if c[0] == "problem"} for p in prefixes]
        return [0.95 if used == {0, 1} and any(c[0] == "step" for c in p[-1].operands) else 0.1
                for p, used in zip(prefixes, read)]
    return stops


def test_learned_stops_and_prefix_conditioned_operands_recover_natalia():
    proposal, _ = natalia()
    c3, stop_calls = PrefixOperands(), []
    result = search_with(proposal, c3, SearchConfig(), _stop_when_every_number_is_read(stop_calls))
    assert result.answer == "72"
    assert [s["text"] for s in result.program["steps"]] == ["48/2=24", "48+24=72"]
    # One C3 call per slot for the whole frontier; every slot-k request carries a k-step prefix.
    assert len(c3.calls) >= 2 and all(len(r.prefix) == r.slot for call in c3.calls for r in call)
    assert {r.slot for r in c3.calls[0]} == {0} and {r.slot for r in c3.calls[1]} == {1}
    # C6 was asked about 1-step prefixes (go on: p = 0.1 < θ keeps both) and the 2-step ones.
    assert {len(p) for p in stop_calls[0]} == {1} and {len(p) for p in stop_calls[1]} == {2}
    assert result.chosen.n_steps == 2 and result.chosen.n_steps_p == pytest.approx(0.9 * 0.95)


def test_learned_stops_fall_back_to_the_step_count_when_c6_has_no_stop_head():
    proposal, c3 = natalia()
    result = search_with(proposal, c3, SearchConfig(), lambda prefixes: None)
    assert result.answer == "72" and len(c3.calls) == 1  # one prefix-free C3 pass, as before


def test_learned_stops_theta_zero_follows_one_path():
    proposal, _ = natalia()
    result = search_with(proposal, PrefixOperands(), SearchConfig(theta=0.0), _stop_when_every_number_is_read([]))
    assert result.paths_explored == 1 and result.answer == "72"


def test_stop_theta_one_keeps_the_go_on_branch_of_a_confident_stop():
    proposal, _ = natalia()
    stops = _stop_when_every_number_is_read([])
    collapsed = search_with(proposal, PrefixOperands(), SearchConfig(), stops)
    kept = search_with(proposal, PrefixOperands(), SearchConfig(stop_theta=1.0), stops)
    # p(stop) = 0.95 ≥ θ = 0.85 ends every 2-step Natalia path; with stop_theta 1.0 the 0.05
    # "go on" branch grows 3-step programs too, which the vote still ranks below 72.
    assert collapsed.answer == kept.answer == "72"
    assert kept.paths_explored > collapsed.paths_explored
    assert kept.chosen.n_steps_p == pytest.approx(0.9 * 0.95)
    with pytest.raises(ValueError, match="stop_theta"):
        SearchConfig(stop_theta=1.5)


def test_chained_operand_positions_pair_the_numbers_of_one_step():
    """ "three toys at $10 each, two packs at $5 each" (mentions 3, 10, 2, 5): with independent
    positions the mixed pair MUL(3, 5) is as likely as MUL(3, 10); a chained second position
    that reads the first operand keeps the pairs apart."""
    from app.inference.proposals import Chained
    from app.inference.search import operand_lists

    m = lambda i: ("problem", i, "literal")  # noqa: E731
    first = {m(0): 0.5, m(2): 0.5}
    second = {m(1): 0.5, m(3): 0.5}
    config = SearchConfig(theta=0.85, top_k=2)
    independent = operand_lists([first, second, {("end",): 1.0}], 0, "MUL", 4, config)
    assert {ops for ops, _, _ in independent} == {(m(0), m(1)), (m(0), m(3)), (m(2), m(1)), (m(2), m(3))}
    paired = {m(0): {m(1): 0.9, m(3): 0.1}, m(2): {m(3): 0.9, m(1): 0.1}}
    asked = []

    def given(previous):
        asked.append(previous)
        return paired[previous]

    chained = operand_lists([first, Chained(given), Chained(lambda previous: {("end",): 1.0})], 0, "MUL", 4, config)
    assert [ops for ops, _, _ in chained[:2]] == [(m(0), m(1)), (m(2), m(3))]
    assert chained[0][1] == (0.5, 0.9) and chained[0][2] == pytest.approx(0.45)
    assert {ops for ops, _, _ in chained} == {(m(0), m(1)), (m(2), m(3))}  # 0.9 ≥ θ: the mixed pairs collapse away
    assert sorted(asked) == [m(0), m(2)]  # asked once per previous operand
