"""Extract gold answers: GSM8K ``#### N`` and MATH ``\\boxed{…}`` / ``\\fbox{…}``.

Boxed contents are found by brace matching, never by a regex that stops at the
first ``}`` (that bug cost the original project half its MATH accuracy).
"""

from __future__ import annotations

import re

__all__ = ["split_gsm8k_solution", "extract_gsm8k_answer", "find_boxed", "extract_boxed"]

_GSM8K_ANSWER_RE = re.compile(r"####\s*(.*)\s*$", re.DOTALL)
_BOX_COMMANDS = ("\\boxed", "\\fbox")


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


def find_boxed(text: str) -> list[tuple[int, int, str]]:
    """Every ``\\boxed{…}``/``\\fbox{…}`` (also ``\\boxed 5``) as ``(start, end, content)``.

    Offsets are char offsets into ``text``; nested braces are matched;
    an unbalanced box (no closing brace) is skipped.
    """
    found: list[tuple[int, int, str]] = []
    position = 0
    while True:
        hits = [(text.find(command, position), command) for command in _BOX_COMMANDS]
        hits = [(index, command) for index, command in hits if index >= 0]
        if not hits:
            return found
        start, command = min(hits)
        cursor = start + len(command)
        if cursor < len(text) and text[cursor].isalpha():  # e.g. \boxedfoo
            position = cursor
            continue
        while cursor < len(text) and text[cursor] == " ":
            cursor += 1
        if cursor < len(text) and text[cursor] == "{":
            end = _matching_brace(text, cursor)
            if end is None:
                position = cursor
                continue
            found.append((start, end + 1, text[cursor + 1:end]))
            position = end + 1
        else:
            match = re.match(r"[^\s$}]+", text[cursor:])
            if match is None:
                position = cursor
                continue
            found.append((start, cursor + match.end(), match.group()))
            position = cursor + match.end()


def extract_boxed(text: str) -> str | None:
    """Content of the last box (the final answer), or ``None``."""
    boxes = find_boxed(text)
    return boxes[-1][2].strip() if boxes else None


def _matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index`` (``\\{``/``\\}`` are literal)."""
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None
