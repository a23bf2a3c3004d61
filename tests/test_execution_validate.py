"""validate_solution: CoT -> program -> execution -> verdict, never raising."""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.execution.executor import execute_program_json
from app.execution.validate import ValidationResult, validate_solution

PROBLEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
           "clips in May. How many clips did Natalia sell altogether in April and May?")
COT = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
       "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.")


def test_correct_trace() -> None:
    result = validate_solution(PROBLEM, COT, "72", "gsm8k")
    assert (result.answer, result.executes, result.correct, result.reason) == ("72", True, True, None)
    assert json.loads(json.dumps(result.program)) == result.program
    assert execute_program_json(result.program).answer == 72


def test_wrong_gold_and_intermediate_gold() -> None:
    assert validate_solution(PROBLEM, COT, "70", "gsm8k").reason == "answer_mismatch"
    not_final = validate_solution(PROBLEM, COT, "24", "gsm8k")
    assert (not_final.executes, not_final.correct, not_final.reason) == (True, False, "answer_not_final")


def test_unannotated_final_steps_are_used() -> None:
    cot = ("Hannah found 2+1 = <<2+1=3>>3 units.\nSo 63/3 = <<63/3=21>>21 eggs per unit.\n"
           "So Hannah found 2*21 = 42 Easter eggs")
    result = validate_solution("63 eggs, twice as many", cot, "42", "gsm8k")
    assert result.correct and result.program["steps"][-1]["source"] == "arithmetic"


def test_percent_answers() -> None:
    cot = "8 * 5% = 40%\n100% - 40% = 60%\n60% * 40% = 24%"
    result = validate_solution("5% per step", cot, "24", "gsm8k")
    assert (result.answer, result.correct) == ("24", True)


def test_equation_answers() -> None:
    cot = "Let s be the cost.\n9s = 117\ns = 117/9 = 13"
    assert validate_solution("9 items cost 117", cot, "13", "gsm8k").correct


def test_no_steps_and_no_gold() -> None:
    assert validate_solution("p", "I just know it.", "5", "gsm8k") == ValidationResult(
        program={"steps": [], "answer_step": None}, reason="no_steps")
    result = validate_solution(PROBLEM, COT, None, "gsm8k")
    assert (result.executes, result.correct, result.reason) == (True, False, "no_gold")


def test_math_dataset_uses_latex_steps_not_the_teacher_box() -> None:
    cot = r"We have $\binom{5}{2} = 10$ ways, so the answer is $\boxed{10}$."
    result = validate_solution("How many ways?", cot, "10", "math")
    assert result.correct and result.program["steps"][0]["source"] == "latex"
    boxed_only = validate_solution("How many ways?", r"The answer is $\boxed{10}$.", "10", "math")
    assert (boxed_only.correct, boxed_only.reason) == (False, "no_steps")


@pytest.mark.parametrize(("cot", "dataset", "reason"), [
    ("<<__import__('os').system('ls')=0>>", "gsm8k", "no_steps"),
    ("<<10**10**10=1>>", "gsm8k", "no_steps"),
    ("(" * 10_000 + "1" + ")" * 10_000 + " = 1", "gsm8k", "no_steps"),
    ("1+1=2 " * 200_000, "gsm8k", "input_too_long"),
    (r"$\def\x{1}\x+1 = 2$", "math", "forbidden_input"),
    (r"$10^{10^{10}} = 1$", "math", "no_steps"),
])
def test_hostile_cots_give_a_reason_quickly(cot: str, dataset: str, reason: str) -> None:
    started = time.perf_counter()
    result = validate_solution("problem", cot, "1", dataset)
    assert (result.correct, result.reason) == (False, reason)
    assert time.perf_counter() - started < 5.0


def test_hostile_gold_is_a_reason_not_a_crash() -> None:
    result = validate_solution(PROBLEM, COT, "\\def\\x{72}\\x", "gsm8k")
    assert (result.executes, result.correct) == (True, False)


def test_unknown_dataset() -> None:
    assert validate_solution("p", "1+1=2", "2", "aime").reason == "unknown_dataset"


def test_runs_in_worker_threads() -> None:
    results: list[ValidationResult] = []
    threads = [threading.Thread(target=lambda: results.append(
        validate_solution(PROBLEM, COT, "72", "gsm8k"))) for _ in range(4)]
    threads += [threading.Thread(target=lambda: results.append(validate_solution(
        "q", r"$2^{10} = 1024$", "1024", "math")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 5 and all(result.correct for result in results)


def test_assignments_to_an_unknown_are_computations() -> None:
    cot = "Let C be the number of candy bars Seth sold\n3*24 +6=C\n72+6=C\nC=<<78=78>>78"
    result = validate_solution("Seth sold 6 more than 3 times 24", cot, "78", "gsm8k")
    assert result.correct
    assert [step["op"] for step in result.program["steps"]] == ["MUL", "ADD", "ADD"]
