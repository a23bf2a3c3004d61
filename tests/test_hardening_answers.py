"""Issue 16, defect 1: the ``\\boxed{`` scan is linear and its input is capped with a typed error."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.execution.answers import MAX_SCAN_CHARS, extract_boxed, find_boxed
from app.execution.errors import InputTooLong


def _reference_find_boxed(text: str) -> list[tuple[int, int, str]]:
    """The former quadratic scan (brace matching restarted at every box), kept as the oracle."""

    def matching(open_index: int) -> int | None:
        depth, index = 0, open_index
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

    found: list[tuple[int, int, str]] = []
    position = 0
    while True:
        hits = [(text.find(c, position), c) for c in ("\\boxed", "\\fbox")]
        hits = [(i, c) for i, c in hits if i >= 0]
        if not hits:
            return found
        start, command = min(hits)
        cursor = start + len(command)
        if cursor < len(text) and text[cursor].isalpha():
            position = cursor
            continue
        while cursor < len(text) and text[cursor] == " ":
            cursor += 1
        if cursor < len(text) and text[cursor] == "{":
            end = matching(cursor)
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


@pytest.mark.timeout(60)
def test_unclosed_boxed_200k_scans_in_linear_time() -> None:
    """×2,000 took 1.2 s and ×16,000 90 s before; ×200,000 (1.4 MB) must take well under a second or two."""
    text = "\\boxed{" * 200_000
    started = time.perf_counter()
    assert extract_boxed(text) is None
    elapsed = time.perf_counter() - started
    print(f"\\boxed{{ x200,000 unclosed ({len(text):,} chars): {elapsed:.3f} s")
    assert elapsed < 3.0


@pytest.mark.timeout(60)
def test_unclosed_fbox_and_boxed_mixed_with_a_closed_last_box() -> None:
    text = "\\fbox{ \\boxed{" * 50_000 + "\\boxed{42}"
    started = time.perf_counter()
    assert extract_boxed(text) == "42"
    assert time.perf_counter() - started < 3.0


@pytest.mark.timeout(60)
def test_many_bare_boxes_are_linear_too() -> None:
    text = "\\boxed 5 " * 150_000
    started = time.perf_counter()
    assert len(find_boxed(text)) == 150_000
    assert time.perf_counter() - started < 3.0


def test_input_over_the_cap_is_refused_with_a_typed_error() -> None:
    text = "\\boxed{1}" + "x" * MAX_SCAN_CHARS
    with pytest.raises(InputTooLong, match="more than 2,000,000"):
        extract_boxed(text)
    with pytest.raises(InputTooLong):
        find_boxed("\\boxed{1} and more", max_chars=10)
    assert extract_boxed("\\boxed{1}", max_chars=9) == "1"


_ALPHABET = st.sampled_from(["\\boxed", "\\fbox", "\\boxedx", "{", "}", "\\{", "\\}", "\\", " ", "$", "5", "x", "\n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_linear_scan_agrees_with_the_former_scan(text: str) -> None:
    assert find_boxed(text) == _reference_find_boxed(text)
