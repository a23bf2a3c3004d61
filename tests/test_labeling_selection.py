"""Pure uncertainty scoring, diverse batch selection, task payloads and review-result parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.config_xml import SPAN_LABELS, label_config
from labeling.review_labels import ReviewResultError, labels_from_result, note, region_labels
from labeling.selection import (
    Candidate,
    binary_distribution,
    component_scores,
    composite_priority,
    jaccard,
    least_confidence,
    margin_uncertainty,
    normalized_entropy,
    score_candidates,
    select_batch,
    select_diverse,
    shingles,
    span_coverage_disagreement,
    task_score,
)
from labeling.task_payload import RegionPrediction, TaskPayloadError, build_task


def test_uncertainty_measures_on_known_distributions() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
    assert least_confidence(probs) == pytest.approx([0.0, 1.0, 0.4 / (2 / 3)])
    assert margin_uncertainty(probs) == pytest.approx([0.0, 1.0, 0.7])
    entropy = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)) / math.log(3)
    assert normalized_entropy(probs) == pytest.approx([0.0, 1.0, entropy])


def test_binary_distribution_treats_scores_as_relevance() -> None:
    assert np.allclose(binary_distribution([0.9, 0.5]), [[0.9, 0.1], [0.5, 0.5]])
    assert normalized_entropy(binary_distribution([0.5]))[0] == pytest.approx(1.0)


def test_disagreement_counts_operands_outside_regions() -> None:
    regions = [(0, 20), (30, 40)]
    operands = [(5, 7), (25, 27), (32, 34), (38, 42)]  # inside, outside, inside, straddling
    assert span_coverage_disagreement(regions, operands) == pytest.approx(0.5)
    assert math.isnan(span_coverage_disagreement(regions, []))


def test_component_scores_and_composite() -> None:
    candidate = Candidate(
        problem_id=1,
        text="x",
        decisions=(np.array([0.9, 0.1]), np.array([0.5, 0.5])),
        regions=((0, 10),),
        operands=((2, 3), (12, 13)),
        execution_failed=True,
        execution_error="ZeroDivisionError",
    )
    scores = component_scores(candidate)
    assert scores["entropy"] == pytest.approx(1.0)  # max over decisions: the 50/50 one
    assert scores["disagreement"] == pytest.approx(0.5)
    assert scores["execution"] == 1.0
    # weights: entropy .3, margin .2, lc .1 (all 1.0), disagreement .2 (0.5), execution .2 (1.0) → 0.9
    assert composite_priority(scores) == pytest.approx(0.9)
    nothing_known = component_scores(Candidate(problem_id=2, text="y"))
    assert composite_priority(nothing_known) == 1.0


def test_reason_names_the_signals() -> None:
    [scored] = score_candidates(
        [Candidate(1, "t", (np.array([0.7, 0.3]),), ((0, 5),), ((1, 2), (9, 10)), True, "wrong answer 7")], "entropy"
    )
    assert scored.reason.startswith("entropy=")
    assert "1/2 operands outside regions" in scored.reason
    assert "execution failed (wrong answer 7)" in scored.reason


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown selection strategy 'bald'"):
        score_candidates([], "bald")


def test_shingles_ignore_numbers_and_detect_near_duplicates() -> None:
    a = shingles("Tom has 5 apples and buys 3 more. How many apples does Tom have?")
    b = shingles("Tom has 7 apples and buys 4 more. How many apples does Tom have?")
    c = shingles("A train travels 60 miles per hour for 3 hours. How far does it go?")
    assert jaccard(a, b) == 1.0
    assert jaccard(a, c) < 0.1


def test_select_diverse_skips_near_duplicates_and_respects_budget() -> None:
    texts = [
        "Tom has 5 apples and buys 3 more. How many apples does Tom have?",
        "Tom has 9 apples and buys 2 more. How many apples does Tom have?",
        "A train travels 60 miles per hour for 3 hours. How far does it go?",
        "Sara reads 20 pages a day. How many pages does she read in a week?",
    ]
    choice = select_diverse([0.9, 0.8, 0.5, 0.4], texts, budget=2)
    assert choice.chosen == [0, 2]
    assert choice.skipped_duplicates == {1: 0}
    assert select_diverse([0.9, 0.8, 0.5, 0.4], texts, budget=0).chosen == []


def test_ties_break_by_problem_id() -> None:
    texts = ["alpha beta gamma delta", "one two three four", "red green blue cyan"]
    assert select_diverse([0.5, 0.5, 0.5], texts, budget=3, tie_break=[30, 10, 20]).chosen == [1, 2, 0]


def test_select_batch_orders_most_uncertain_first() -> None:
    candidates = [
        Candidate(10, "Alice buys 4 pens at 2 dollars each.", (np.array([0.95, 0.05]),)),
        Candidate(11, "A tank fills at 3 liters per minute for an hour.", (np.array([0.55, 0.45]),)),
        Candidate(12, "Divide 84 marbles equally among 7 children.", (np.array([0.75, 0.25]),)),
    ]
    chosen = select_batch(candidates, budget=2, strategy="margin")
    assert [s.problem_id for s in chosen] == [11, 12]
    assert chosen[0].priority == pytest.approx(0.9)
    assert task_score(chosen[0].priority) == pytest.approx(0.1)


def test_random_strategy_is_reproducible_per_seed() -> None:
    candidates = [Candidate(i, f"problem number {i} words {i * 7}") for i in range(1, 30)]
    first = [s.problem_id for s in select_batch(candidates, 5, "random", seed=1)]
    again = [s.problem_id for s in select_batch(candidates, 5, "random", seed=1)]
    other = [s.problem_id for s in select_batch(candidates, 5, "random", seed=2)]
    assert first == again and first != other


def test_build_task_carries_scores_and_model_version() -> None:
    text = "Natalia sold clips to 48 of her friends in April."
    task = build_task(
        problem_id=7,
        round_number=2,
        text=text,
        regions=[
            RegionPrediction(0, 18, 0.4),
            RegionPrediction(0, 18, 0.7),  # same span: the higher score wins
            RegionPrediction(22, 24, 0.9, "DIV"),
        ],
        model_version="r2-attention",
        task_score=0.25,
        answer_type="integer",
    )
    assert task["data"]["mycelium_key"] == "r2-p7"
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "r2-attention" and prediction["score"] == 0.25
    spans = [r for r in prediction["result"] if r["type"] == "labels"]
    assert [(r["value"]["text"], r["value"]["labels"], r["score"]) for r in spans] == [
        ("Natalia sold clips", ["REGION"], 0.7),
        ("48", ["DIV"], 0.9),
    ]
    assert prediction["result"][-1]["value"] == {"choices": ["integer"]}
    with pytest.raises(TaskPayloadError, match="problem 7: region \\[40, 99\\)"):
        build_task(
            problem_id=7,
            round_number=2,
            text=text,
            regions=[RegionPrediction(40, 99, 0.1)],
            model_version="m",
            task_score=0.5,
        )


def test_label_config_offers_every_span_label() -> None:
    config = label_config()
    assert all(f'value="{label}"' in config for label in SPAN_LABELS)
    assert 'name="answer_type"' in config and 'name="note"' in config


def test_labels_from_result() -> None:
    text = "Weng earns $12 an hour. She worked 50 minutes."
    result = [
        {
            "from_name": "span",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 11, "end": 14, "labels": ["DIV"]},
        },
        {
            "from_name": "span",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": 4, "labels": ["REGION"]},
        },
        {"from_name": "answer_type", "to_name": "text", "type": "choices", "value": {"choices": ["decimal"]}},
        {"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["per minute rate"]}},
    ]
    labels = labels_from_result(result, text)
    assert labels["C1"] == {
        "regions": [{"start": 0, "end": 4, "text": "Weng"}, {"start": 11, "end": 14, "text": "$12"}]
    }
    assert labels["C2"] == {"regions": [{"start": 11, "end": 14, "text": "$12", "label": "DIV"}]}
    assert labels["C6"] == {"answer_type": "decimal"}
    assert note(result) == "per minute rate"
    assert region_labels(labels["C2"]) == [(11, 14, "DIV")]
    assert set(labels_from_result([], text)) == {"C1"}  # "no regions" is a label too
    with pytest.raises(ReviewResultError, match="span 40..90"):
        labels_from_result([{"from_name": "span", "type": "labels", "value": {"start": 40, "end": 90}}], text)


_WORDS = ["tom", "has", "apples", "train", "miles", "hour", "pages", "read", "buys", "more", "how", "many"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8)),
        min_size=0,
        max_size=25,
    ),
    st.integers(0, 10),
    st.floats(0.2, 1.0),
)
def test_select_diverse_invariants(items: list[tuple[float, list[str]]], budget: int, threshold: float) -> None:
    priorities = [p for p, _ in items]
    texts = [" ".join(words) for _, words in items]
    choice = select_diverse(priorities, texts, budget, max_similarity=threshold)
    assert len(choice.chosen) <= budget and len(set(choice.chosen)) == len(choice.chosen)
    chosen_priorities = [priorities[i] for i in choice.chosen]
    assert chosen_priorities == sorted(chosen_priorities, reverse=True)
    for n, i in enumerate(choice.chosen):
        for j in choice.chosen[:n]:
            assert jaccard(shingles(texts[i]), shingles(texts[j])) < threshold
    # nothing more uncertain was left out unless it duplicates a chosen problem
    if len(choice.chosen) < budget:
        assert len(choice.chosen) + len(choice.skipped_duplicates) == len(items)
