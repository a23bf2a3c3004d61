"""find_numbers: exact values, kinds and char spans of number mentions."""

from __future__ import annotations

import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from app.execution.numbers import NumberMention, find_numbers


def _triples(text: str) -> list[tuple[str, sympy.Rational, str]]:
    return [(m.text, m.value, m.kind) for m in find_numbers(text)]


R = sympy.Rational


def test_interface_examples_from_the_contract() -> None:
    cases = {
        "50%": (R(50), "percent"),
        "$3.50": (R(7, 2), "money"),
        "half": (R(1, 2), "word"),
        "twice": (R(2), "word"),
        "dozen": (R(12), "word"),
        "1,000": (R(1000), "integer"),
        "-3": (R(-3), "integer"),
        "3/4": (R(3, 4), "fraction"),
        "one": (R(1), "word"),
        "twenty": (R(20), "word"),
        "hundred": (R(100), "word"),
        "thousand": (R(1000), "word"),
        "3.5": (R(7, 2), "decimal"),
    }
    for text, (value, kind) in cases.items():
        assert _triples(text) == [(text, value, kind)], text


def test_all_small_number_words() -> None:
    words = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
             "fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()
    for value, word in enumerate(words):
        assert _triples(f"I saw {word} birds") == [(word, R(value), "word")]


def test_spans_point_into_the_text() -> None:
    text = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
    mentions = find_numbers(text)
    assert [(m.start, m.end, m.text) for m in mentions] == [(22, 24, "48"), (68, 72, "half")]
    assert all(text[m.start:m.end] == m.text for m in mentions)


def test_mixed_sentence() -> None:
    text = "Betty has $100 and spends 25% on a dozen eggs, then 1.5 hours on 2 1/2 pages, 3/4 of them."
    assert _triples(text) == [
        ("$100", R(100), "money"), ("25%", R(25), "percent"), ("dozen", R(12), "word"),
        ("1.5", R(3, 2), "decimal"), ("2 1/2", R(5, 2), "fraction"), ("3/4", R(3, 4), "fraction"),
    ]


def test_division_is_not_a_fraction_literal() -> None:
    assert _triples("48/2 = 24") == [("48", R(48), "integer"), ("2", R(2), "integer"),
                                     ("24", R(24), "integer")]


def test_minus_is_binary_between_numbers_and_hyphens() -> None:
    assert _triples("5-3 and 5 - 3") == [("5", R(5), "integer"), ("3", R(3), "integer"),
                                         ("5", R(5), "integer"), ("3", R(3), "integer")]
    assert _triples("a 120-page book") == [("120", R(120), "integer")]
    assert _triples("it fell to -3 and -$5") == [("-3", R(-3), "integer"), ("-$5", R(-5), "money")]


def test_compound_number_words() -> None:
    assert _triples("twenty-five and two hundred fifty-one, one thousand two hundred") == [
        ("twenty-five", R(25), "word"), ("two hundred fifty-one", R(251), "word"),
        ("one thousand two hundred", R(1200), "word"),
    ]
    assert _triples("Twice as many") == [("Twice", R(2), "word")]
    assert _triples("someone is lonely") == []


def test_thousands_separators_and_decimals() -> None:
    assert _triples("$1,234,567.89 or 1,000,000.") == [
        ("$1,234,567.89", R(123456789, 100), "money"), ("1,000,000", R(1000000), "integer"),
    ]
    assert _triples("1,2,3") == [("1", R(1), "integer"), ("2", R(2), "integer"), ("3", R(3), "integer")]


def test_percent_word_and_unicode_fractions() -> None:
    assert _triples("12.5 percent of ½ and 2½") == [
        ("12.5 percent", R(25, 2), "percent"), ("½", R(1, 2), "fraction"), ("2½", R(5, 2), "fraction"),
    ]


def test_mentions_are_frozen_dataclasses() -> None:
    mention = find_numbers("7")[0]
    assert mention == NumberMention(0, 1, "7", R(7), "integer")
    try:
        mention.start = 3  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("NumberMention must be frozen")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 ,./-$%½abcdefhlnortuvwxyz")), max_size=60))
def test_fuzz_spans_sorted_non_overlapping_and_exact(text: str) -> None:
    mentions = find_numbers(text)
    for mention in mentions:
        assert text[mention.start:mention.end] == mention.text
        assert isinstance(mention.value, sympy.Rational)
        assert mention.kind in {"integer", "decimal", "fraction", "percent", "money", "word"}
    for before, after in zip(mentions, mentions[1:]):
        assert before.end <= after.start


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9))
def test_fuzz_integers_round_trip(number: int) -> None:
    text = f"value {number} here"
    assert [(m.value, m.kind) for m in find_numbers(text)] == [(R(number), "integer")]


def test_huge_inputs_are_linear_and_safe() -> None:
    import time

    started = time.perf_counter()
    assert find_numbers("1" * 1_000_000) == []  # a digit run this long is not a quantity
    assert [m.text for m in find_numbers("1 " + "9" * 5000 + "/2 and 3/4")] == ["1", "3/4"]
    assert find_numbers("(" * 1_000_000) == []
    assert time.perf_counter() - started < 3.0
