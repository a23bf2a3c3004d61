"""Programs: a JSON-serialisable DAG of whitelisted operations, and how to build one.

JSON shape (stored in the database; other components rely on it)::

    {"steps": [{"id": 1, "op": "DIV",
                "operands": [{"kind": "problem", "value": "48", "start": 22, "end": 24,
                              "reading": "literal"},
                             {"kind": "constant", "value": "2"}],
                "result": "24", "text": "48/2=24", "source": "annotation"},
               {"id": 2, "op": "ADD",
                "operands": [{"kind": "problem", "value": "48", "start": 22, "end": 24,
                              "reading": "literal"},
                             {"kind": "step", "ref": 1}],
                "result": "72", "text": "48+24=72", "source": "annotation"}],
     "answer_step": 2}

Representation choices:

* One step applies one operation.  ADD and MUL are n-ary and chains of SUB or
  DIV fold left (``100-50-30-15`` is one SUB step with four operands).  An
  expression mixing operations is split into one step per operation, inner
  first: ``(12+36+72)/3`` becomes ``ADD(12, 36, 72)`` then ``DIV(step, 3)``;
  all of those steps share the source ``text``.
* Operand ``value`` is a literal :func:`~app.execution.operations.parse_literal`
  accepts (``"48"``, ``"3.5"``, ``"3/4"``, ``"60%"`` meaning 3/5, ``"pi"``).
  ``start``/``end`` of a problem operand are char offsets into the problem text;
  ``reading`` (optional, written by :func:`build_program`) says how the value
  comes from that mention: ``literal``, ``percent`` (mention / 100) or
  ``reciprocal`` (1 / mention: "half" used as ÷2).  A literal-value match is
  always preferred to an operator-word reading: the 2 of ``15*2`` in "… $15 …
  twice as much" points at "twice" (literal), not at an earlier "half".
* ``EQUATION`` steps keep the normalised equation in ``text`` (e.g.
  ``"9*s = 117"``); their operands are the equation's numbers left to right,
  and the executor re-solves the equation with the operand values substituted.
* ``SELECT`` (x -> x) is a step where the CoT states an earlier result again
  as its conclusion: a value-only annotation ``<<250=250>>`` equal to an
  earlier result, or ``x = 20`` after an equation solved for x.  An equation
  whose unknown is already solved and whose substitution holds (``2x = 20``)
  is a value computation with a step operand for x; so is any later use of an
  unknown given a value by an assignment (``C = 3*24+6``).
* ``TO_PERCENT`` (x -> 100x) is appended when the final written result is a
  percent (``60% * 40% = 24%``: the answer is 24, in percent units).
* ``result`` is the value computed from the operands when the program was built
  (``str`` of a sympy number, e.g. ``"7/2"``); the executor recomputes it and
  never trusts it.  ``answer_step`` is the last step's id.
* A number in a computation becomes a ``step`` operand when it equals (or is
  the rounding, to its written decimals, of) an earlier step's computed or
  written result — that is the dependency edge — else a ``problem`` operand
  when it matches a number of the problem text, else a ``constant``.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import sympy

from app.execution.arith_parser import parse_equation
from app.execution.computation import SOURCES, Computation
from app.execution.errors import ExecutionError, InvalidProgram, TooComplex
from app.execution.expression import OP_ARITY, Apply, Const, Node, Num, Var
from app.execution.limits import DEFAULT_LIMITS, Deadline, Limits
from app.execution.numbers import NumberMention, find_numbers
from app.execution.operations import (
    evaluate_op, evaluate_tree, format_value, parse_literal, solve_equation,
)

__all__ = ["Operand", "Step", "Program", "build_program", "program_to_json",
           "program_from_json", "rational_text", "mention_reading", "OPERAND_KINDS", "READINGS"]

OPERAND_KINDS: tuple[str, ...] = ("problem", "step", "constant")
READINGS: tuple[str, ...] = ("literal", "percent", "reciprocal")
"""How a problem operand's value comes from its mention (same names as app.inference.proposals):
``literal`` (the mention's value, "48" → 48, "twice" → 2, "half" → 1/2), ``percent`` (the
mention's value / 100, "20%" → 1/5) and ``reciprocal`` (1 / the mention's value: "half" used as
÷2 gives the operand 2)."""


@dataclass(frozen=True)
class Operand:
    """A problem number (with char span), an earlier step's result, or a constant."""

    kind: str  # 'problem' | 'step' | 'constant'
    value: str | None = None  # literal for 'problem' and 'constant'
    start: int | None = None  # char offset into the problem text ('problem' only)
    end: int | None = None
    ref: int | None = None  # step id ('step' only)
    reading: str | None = None  # 'problem' only: one of READINGS (None: not recorded)


@dataclass(frozen=True)
class Step:
    """One operation of a program."""

    id: int
    op: str
    operands: tuple[Operand, ...]
    result: str
    text: str
    source: str


@dataclass(frozen=True)
class Program:
    """Steps in execution order and the id of the step that holds the answer."""

    steps: tuple[Step, ...]
    answer_step: int | None

    def dependency_edges(self) -> list[tuple[int, int]]:
        """``(i, j)`` for every step j that consumes step i's result."""
        return sorted({(operand.ref, step.id) for step in self.steps
                       for operand in step.operands
                       if operand.kind == "step" and operand.ref is not None})


def rational_text(value: sympy.Rational) -> str:
    """Shortest exact literal: ``"24"``, ``"3.5"``, ``"1/3"``."""
    value = sympy.Rational(value)
    if value.q == 1:
        return str(value.p)
    denominator = int(value.q)
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.p}/{value.q}"
    places = max(twos, fives)
    scaled = abs(int(value.p)) * 10**places // int(value.q)
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def _literal_text(num: Num) -> str:
    return rational_text(num.literal) + ("%" if num.percent else "")


@dataclass
class _Built:
    """A step under construction plus the written result used for matching."""

    step: Step
    value: sympy.Expr
    claimed: sympy.Rational | None


def build_program(problem_text: str, computations: Sequence[Computation],
                  limits: Limits = DEFAULT_LIMITS, deadline: Deadline | None = None) -> Program:
    """Assemble computations (in CoT order) into a program.

    Computations that cannot be evaluated (bad arity, division by zero, an
    unknown outside an equation, ...) are skipped: a parse is kept only if
    sympy can evaluate it.
    """
    mentions = find_numbers(problem_text)
    built: list[_Built] = []
    unknowns: dict[str, int] = {}  # unknown name -> id of the EQUATION step that solved it
    last_claim_percent = False
    for computation in computations:
        if deadline is not None:
            deadline.check("building program")
        if len(built) >= limits.max_steps:
            raise TooComplex(f"more than {limits.max_steps} steps")
        try:
            new = _build_computation(computation, mentions, built, unknowns, limits, deadline)
        except ExecutionError as error:
            if error.reason == "timeout":
                raise
            continue
        if new:
            built.extend(new)
            claim = computation.claimed
            last_claim_percent = (claim is not None and claim.percent
                                  and new[-1].value == claim.value != claim.literal)
            if new[-1].step.op == "EQUATION":
                (name,) = _unknowns(computation.tree) | _unknowns(computation.rhs)
                unknowns[name] = new[-1].step.id
            elif computation.assigns is not None:
                unknowns[computation.assigns] = new[-1].step.id
    if built and last_claim_percent:
        last = built[-1]
        value = evaluate_op("TO_PERCENT", [last.value], limits)
        built.append(_Built(Step(last.step.id + 1, "TO_PERCENT",
                                 (Operand("step", ref=last.step.id),), format_value(value),
                                 last.step.text, last.step.source), value, None))
    steps = tuple(item.step for item in built)
    return Program(steps, steps[-1].id if steps else None)


def _unknowns(node: Node | None) -> set[str]:
    if isinstance(node, Var):
        return {node.name}
    if isinstance(node, Apply):
        return set().union(*(_unknowns(arg) for arg in node.args))
    return set()


def _build_computation(computation: Computation, mentions: list[NumberMention],
                       built: list[_Built], unknowns: dict[str, int], limits: Limits,
                       deadline: Deadline | None) -> list[_Built]:
    """Steps for one computation (empty when it holds no operation)."""
    next_id = (built[-1].step.id + 1) if built else 1
    claimed = computation.claimed.value if computation.claimed is not None else None
    if computation.kind == "equation":
        substituted = _substitute_known(computation, unknowns, built)
        if substituted is not None:
            computation = substituted
    if computation.kind == "value" and computation.tree is not None:
        split = _split_divisions(computation.tree, mentions, built)
        if split is not computation.tree:
            computation = dataclasses.replace(computation, tree=split)
    if computation.kind == "value" and not isinstance(computation.tree, Apply):
        return _selection(computation, built, unknowns, next_id)
    if computation.kind == "equation":
        if computation.equation_text is None:
            raise InvalidProgram("equation without text")
        lhs, rhs = parse_equation(computation.equation_text, limits)  # what the executor sees
        nums = _numbers(lhs) + _numbers(rhs)
        operands = tuple(_resolve(num, mentions, built) for num in nums)
        values = [_operand_value(operand, built) for operand in operands]
        value = solve_equation(lhs, rhs, limits, deadline, values)
        step = Step(next_id, "EQUATION", operands, format_value(value),
                    computation.equation_text, "equation")
        return [_Built(step, value, claimed)]
    if not isinstance(computation.tree, Apply):
        return []
    divisors = _divisor_ids(computation.tree)
    resolved = {id(num): _resolve(num, mentions, built, id(num) in divisors)
                for num in _numbers(computation.tree)}
    new: list[_Built] = []

    def emit(node: Node) -> Operand:
        if isinstance(node, Num):
            return resolved[id(node)]
        if isinstance(node, Const):
            return Operand("constant", value=node.name)
        if isinstance(node, Var):
            if node.name in unknowns:
                return Operand("step", ref=unknowns[node.name])
            raise InvalidProgram(f"unknown {node.name!r} outside an equation")
        operands = tuple(emit(arg) for arg in node.args)
        values = [_operand_value(operand, built + new) for operand in operands]
        value = evaluate_op(node.op, values, limits)
        step_id = next_id + len(new)
        new.append(_Built(Step(step_id, node.op, operands, format_value(value),
                               computation.text, computation.source), value, None))
        return Operand("step", ref=step_id)

    emit(computation.tree)
    if new:
        new[-1].claimed = claimed
    return new


def _substitute_known(computation: Computation, unknowns: dict[str, int],
                      built: list[_Built]) -> Computation | None:
    """``2x = 20`` after x was solved: a value computation of ``2x`` claiming 20.

    Returns ``None`` (solve it as a new equation) unless the unknown is known,
    one side is a plain number, and substituting the known value makes both
    sides equal.
    """
    names = _unknowns(computation.tree) | _unknowns(computation.rhs)
    if len(names) != 1 or next(iter(names)) not in unknowns or computation.rhs is None:
        return None
    (name,) = names
    value = next(item.value for item in built if item.step.id == unknowns[name])
    sides = [(computation.tree, computation.rhs), (computation.rhs, computation.tree)]
    for expression, other in sides:
        if isinstance(other, Num) and name in _unknowns(expression):
            try:
                computed = evaluate_tree(expression, variables={name: sympy.Symbol(name)})
            except ExecutionError:
                return None
            if sympy.simplify(computed.subs(sympy.Symbol(name), value) - other.value) == 0:
                return Computation("value", expression, other, computation.text,
                                   computation.start, computation.end, computation.source)
    return None


def _selection(computation: Computation, built: list[_Built], unknowns: dict[str, int],
               next_id: int) -> list[_Built]:
    """``SELECT`` of an earlier result the CoT states again (``<<250=250>>``, ``x = 20``)."""
    tree = computation.tree
    target: _Built | None = None
    if isinstance(tree, Var) and tree.name in unknowns:
        target = next(item for item in built if item.step.id == unknowns[tree.name])
        if computation.claimed is not None and target.value != computation.claimed.value:
            target = None
    elif isinstance(tree, Num):
        target = next((item for item in reversed(built) if item.value == tree.value), None)
    if target is None or (built and built[-1] is target and isinstance(tree, Num)):
        return []
    step = Step(next_id, "SELECT", (Operand("step", ref=target.step.id),),
                format_value(target.value), computation.text, computation.source)
    return [_Built(step, target.value, None)]


def _numbers(node: Node) -> list[Num]:
    if isinstance(node, Num):
        return [node]
    if isinstance(node, Apply):
        return [num for arg in node.args for num in _numbers(arg)]
    return []


_DIVISION_TEXT_RE = re.compile(r"(\d+)/(\d+)")


def _split_divisions(node: Node, mentions: list[NumberMention], built: list[_Built]) -> Node:
    """``12/60`` parsed as one fraction literal becomes ``DIV(12, 60)`` when that grounds it.

    A written ``a/b`` of two integers is a division, not a fraction literal, when the fraction
    is not itself a number of the problem text but ``a`` or ``b`` is (or is an earlier result):
    "$12 an hour … 12/60 = 0.2 per minute" divides the problem's 12 by the constant 60.
    Returns ``node`` itself when nothing changes.
    """
    if isinstance(node, Apply):
        args = tuple(_split_divisions(arg, mentions, built) for arg in node.args)
        return node if all(new is old for new, old in zip(args, node.args)) else Apply(node.op, args)
    if not isinstance(node, Num) or node.percent:
        return node
    match = _DIVISION_TEXT_RE.fullmatch(node.text.strip())
    if match is None or int(match.group(2)) == 0:
        return node
    if any(_mention_match(mention, node) is not None for mention in mentions):
        return node
    parts = [Num(sympy.Rational(int(group)), group) for group in match.groups()]
    grounded = any(
        any(item.value == part.value for item in built)
        or any(_mention_match(mention, part) is not None for mention in mentions)
        for part in parts
    )
    return Apply("DIV", tuple(parts)) if grounded else node


def _divisor_ids(node: Node) -> set[int]:
    """``id()`` of every number written as a divisor (a non-first operand of ``DIV``)."""
    if not isinstance(node, Apply):
        return set()
    found = set().union(*(_divisor_ids(arg) for arg in node.args))
    if node.op == "DIV":
        found |= {id(arg) for arg in node.args[1:] if isinstance(arg, Num)}
    return found


def _resolve(num: Num, mentions: list[NumberMention], built: list[_Built],
             divisor: bool = False) -> Operand:
    """Step ref, problem number or constant for one written number (``divisor``: it divides)."""
    for item in reversed(built):
        if item.value == num.value:
            return Operand("step", ref=item.step.id)
    places = _decimal_places(num.text)
    if places:
        tolerance = sympy.Rational(1, 2 * 10**places)
        for item in reversed(built):
            if isinstance(item.value, sympy.Rational) and abs(item.value - num.value) <= tolerance \
                    and item.value != 0:
                return Operand("step", ref=item.step.id)
    best: tuple[int, int, NumberMention, str] | None = None
    for index, mention in enumerate(mentions):
        match = _mention_match(mention, num, divisor)
        if match is not None and (best is None or (match[0], index) < best[:2]):
            best = (match[0], index, mention, match[1])
    if best is not None:
        _, _, mention, reading = best
        return Operand("problem", value=_literal_text(num), start=mention.start, end=mention.end,
                       reading=reading)
    return Operand("constant", value=_literal_text(num))


def mention_reading(mention_value: sympy.Expr, operand_value: sympy.Expr) -> str | None:
    """How ``operand_value`` is read off a mention whose literal value is ``mention_value``.

    ``"literal"`` when equal, ``"percent"`` when ``operand = mention / 100``, ``"reciprocal"``
    when ``operand = 1 / mention`` (non-zero), else ``None``.  Checked in that order.
    """
    if mention_value == operand_value:
        return "literal"
    if mention_value / 100 == operand_value:
        return "percent"
    if mention_value != 0 and operand_value != 0 and 1 / mention_value == operand_value:
        return "reciprocal"
    return None


def _mention_match(mention: NumberMention, num: Num, divisor: bool = False) -> tuple[int, str] | None:
    """``(rank, reading)`` when the problem number ``mention`` can be the written ``num``.

    Lower rank is better: 0 the same number written the same way ("48" for 48, "20%" for
    20%, "twice" for 2); 1 the same value in another form ("0.5" for "half", "20" for
    "20%"); 2 a percent read as a fraction ("20%" for 0.2); 3 an operator word's reciprocal
    ("half" for the 2 of ``48/2``) — except that a number word read as its reciprocal
    *in a divisor* ("half" for the 2 of ``100/2``) ranks 0 too, as that is what the word means
    there (ties go to the earlier mention).  A percent reading needs a percent mention (or a
    percent ``num`` written with the mention's digits) and a reciprocal one a number word, so
    the 1/4 of a computation never points at a "4".  The reading is always derived from the values, so the
    invariant "mention value under reading == operand value" holds by construction.
    """
    reading = mention_reading(mention.value, num.value)
    if reading is None:
        return None
    same_form = (mention.kind == "percent") == num.percent
    if mention.value == num.literal:
        return (0 if same_form else 1), reading
    if reading == "literal":
        return 1, reading
    if reading == "percent":
        return (2, reading) if mention.kind == "percent" else None
    if mention.kind != "word":
        return None
    return (0 if divisor else 3), reading


def _decimal_places(text: str) -> int:
    digits = text.rstrip("%").strip()
    return len(digits.split(".", 1)[1]) if "." in digits else 0


def _operand_value(operand: Operand, built: Sequence[_Built]) -> sympy.Expr:
    if operand.kind == "step":
        for item in built:
            if item.step.id == operand.ref:
                return item.value
        raise InvalidProgram(f"dangling ref {operand.ref}")
    assert operand.value is not None
    return parse_literal(operand.value)


def program_to_json(program: Program) -> dict[str, Any]:
    """The program as plain JSON types (see the module docstring for the shape)."""
    return {
        "steps": [{
            "id": step.id,
            "op": step.op,
            "operands": [_operand_to_json(operand) for operand in step.operands],
            "result": step.result,
            "text": step.text,
            "source": step.source,
        } for step in program.steps],
        "answer_step": program.answer_step,
    }


def _operand_to_json(operand: Operand) -> dict[str, Any]:
    if operand.kind == "step":
        return {"kind": "step", "ref": operand.ref}
    if operand.kind == "problem":
        data = {"kind": "problem", "value": operand.value, "start": operand.start, "end": operand.end}
        if operand.reading is not None:
            data["reading"] = operand.reading
        return data
    return {"kind": "constant", "value": operand.value}


def program_from_json(data: Any, limits: Limits = DEFAULT_LIMITS) -> Program:
    """Validate and load a program; raises :class:`InvalidProgram` on any defect."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise InvalidProgram("program must be an object with a 'steps' list")
    if len(data["steps"]) > limits.max_steps:
        raise TooComplex(f"more than {limits.max_steps} steps")
    steps: list[Step] = []
    seen: set[int] = set()
    for raw in data["steps"]:
        step = _step_from_json(raw)
        if step.id in seen:
            raise InvalidProgram(f"duplicate step id {step.id}")
        for operand in step.operands:
            if operand.kind == "step" and operand.ref not in seen:
                raise InvalidProgram(f"step {step.id} refers to {operand.ref}, not an earlier step")
        seen.add(step.id)
        steps.append(step)
    answer = data.get("answer_step")
    if answer is not None and (not isinstance(answer, int) or answer not in seen):
        raise InvalidProgram(f"answer_step {answer!r} is not a step id")
    return Program(tuple(steps), answer)


def _step_from_json(raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise InvalidProgram("step must be an object")
    step_id, op, operands = raw.get("id"), raw.get("op"), raw.get("operands")
    if not isinstance(step_id, int) or isinstance(step_id, bool):
        raise InvalidProgram("step id must be an integer")
    if op not in OP_ARITY:
        raise InvalidProgram(f"unknown op {op!r}")
    if not isinstance(operands, list):
        raise InvalidProgram("operands must be a list")
    source = raw.get("source", "arithmetic")
    if source not in SOURCES:
        raise InvalidProgram(f"unknown source {source!r}")
    text, result = raw.get("text", ""), raw.get("result", "")
    if not isinstance(text, str) or not isinstance(result, str):
        raise InvalidProgram("text and result must be strings")
    return Step(step_id, op, tuple(_operand_from_json(item) for item in operands),
                result, text, source)


def _operand_from_json(raw: Any) -> Operand:
    if not isinstance(raw, dict) or raw.get("kind") not in OPERAND_KINDS:
        raise InvalidProgram(f"bad operand {str(raw)[:60]}")
    kind = raw["kind"]
    if kind == "step":
        if not isinstance(raw.get("ref"), int):
            raise InvalidProgram("step operand needs an integer ref")
        return Operand("step", ref=raw["ref"])
    value = raw.get("value")
    if not isinstance(value, str):
        raise InvalidProgram(f"{kind} operand needs a string value")
    parse_literal(value)  # validates
    if kind == "problem":
        start, end = raw.get("start"), raw.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise InvalidProgram("problem operand needs start <= end")
        reading = raw.get("reading")
        if reading is not None and reading not in READINGS:
            raise InvalidProgram(f"unknown reading {reading!r}")
        return Operand("problem", value=value, start=start, end=end, reading=reading)
    return Operand("constant", value=value)
