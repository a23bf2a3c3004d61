"""Extract gold answers: GSM8K ``#### N`` and MATH ``\\boxed{…}`` / ``\\fbox{…}``.

Boxed contents are found by brace matching, never by a regex that stops at the
first ``}`` (that bug cost the original project half its MATH accuracy).
"""

from __future__ import annotations

import re

from app.execution.errors import InputTooLong

__all__ = ["split_gsm8k_solution", "extract_gsm8k_answer", "find_boxed", "extract_boxed", "MAX_SCAN_CHARS"]

_GSM8K_ANSWER_RE = re.compile(r"####\s*(.*)\s*$", re.DOTALL)
_BOX_COMMAND_RE = re.compile(r"\\(?:boxed|fbox)")
_BARE_ARGUMENT_RE = re.compile(r"[^\s$}]+")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)  # an escape pair, or a brace
# Far above any real solution or CoT (MATH's longest is ~10k); the scan is linear below it.
MAX_SCAN_CHARS = 2_000_000


def split_gsm8k_solution(solution: str) -> tuple[str, str | None]:
    """``(reasoning, final answer)`` of a GSM8K solution; answer ``None`` without ``####``."""
    index = solution.rfind("####")
    if index < 0:
        return solution, None
    return solution[:index].rstrip(), _clean_gsm8k_number(solution[index + 4:])


def extract_gsm8k_answer(solution: str) -> str | None:
    """The ``#### N`` answer as a plain number string (commas and ``$`` removed)."""
    return split_gsm8k_solution(solution)[1]


def _clean_gsm8k_number(text: str) -> str | None:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", line).replace("$", "").strip()
    cleaned = cleaned.rstrip(".").strip()
    return cleaned or None


def find_boxed(text: str, *, max_chars: int = MAX_SCAN_CHARS) -> list[tuple[int, int, str]]:
    """Every ``\\boxed{…}``/``\\fbox{…}`` (also ``\\boxed 5``) as ``(start, end, content)``.

    Offsets are char offsets into ``text``; nested braces are matched;
    an unbalanced box (no closing brace) is skipped. One linear pass: the braces
    are matched once with a stack, so any number of unclosed boxes costs O(len).
    Raises :class:`InputTooLong` when ``text`` exceeds ``max_chars``.
    """
    if len(text) > max_chars:
        raise InputTooLong(f"{len(text):,} characters to scan for \\boxed{{…}}, more than {max_chars:,}")
    found: list[tuple[int, int, str]] = []
    closing: dict[int, int] | None = None  # built on the first braced box only
    position = 0
    while True:
        hit = _BOX_COMMAND_RE.search(text, position)
        if hit is None:
            return found
        start, cursor = hit.start(), hit.end()
        if cursor < len(text) and text[cursor].isalpha():  # e.g. \boxedfoo
            position = cursor
            continue
        while cursor < len(text) and text[cursor] == " ":
            cursor += 1
        if cursor < len(text) and text[cursor] == "{":
            if closing is None:
                closing = _match_braces(text)
            end = closing.get(cursor)
            if end is None:
                position = cursor
                continue
            found.append((start, end + 1, text[cursor + 1:end]))
            position = end + 1
        else:
            match = _BARE_ARGUMENT_RE.match(text, cursor)
            if match is None:
                position = cursor
                continue
            found.append((start, match.end(), match.group()))
            position = match.end()


def extract_boxed(text: str, *, max_chars: int = MAX_SCAN_CHARS) -> str | None:
    """Content of the last box (the final answer), or ``None``; :class:`InputTooLong` past ``max_chars``."""
    boxes = find_boxed(text, max_chars=max_chars)
    return boxes[-1][2].strip() if boxes else None


def _match_braces(text: str) -> dict[int, int]:
    """``{open index: close index}`` for every balanced ``{`` (``\\{``/``\\}`` are literal).

    One pass with a stack; an unclosed ``{`` is absent. Backslash escapes pair up from the
    start of ``text``, which agrees with a scan started at any unescaped ``{``.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for token in _BRACE_TOKEN_RE.finditer(text):
        char = token.group()
        if char == "{":
            stack.append(token.start())
        elif char == "}" and stack:
            pairs[stack.pop()] = token.start()
    return pairs
