"""The active-learning efficiency bench: reference answer types, the simple learner, one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.bench_module import bench_module
from training.simple_learner import SoftmaxRegression, accuracy, featurize, tokens

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    return bench_module("al_efficiency")


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("36", "integer"),
        ("1,000", "integer"),
        ("\\$3.54", "decimal"),
        ("-\\frac{2}{5}", "fraction"),
        ("\\dfrac{1}{29,\\!322,\\!216}", "fraction"),
        ("3\\sqrt{5}", "radical"),
        ("(-\\infty, 1)\\cup(1, \\infty)", "interval"),
        ("\\left[-3,-\\frac{4}{3}\\right)", "interval"),
        ("(-4,4)", "tuple"),
        ("-2, 2", "set"),
        ("\\text{Sunday}", "text"),
        ("-3x^2 +9x -11", "expression"),
    ],
)
def test_reference_answer_types(gold: str, expected: str) -> None:
    assert _bench().answer_type(gold) == expected


def test_simple_learner_fits_a_separable_toy_task() -> None:
    texts = ["express as a common fraction"] * 5 + ["how many apples in total"] * 5
    labels = np.array([0] * 5 + [1] * 5)
    x = featurize(texts, dim=256)
    model = SoftmaxRegression(n_classes=2).fit(x, labels)
    assert accuracy(model, x, labels) == 1.0
    assert np.allclose(model.predict_proba(x).sum(axis=1), 1.0)
    assert tokens("Find $x^2$ if x = 3.5") == ["find", "$", "x", "^", "<num>", "$", "if", "x", "=", "<num>"]
    with pytest.raises(ValueError, match="labels must lie in"):
        model.fit(x, labels + 5)


def test_bench_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    sample = REPO / "tests" / "fixtures" / "math_sample.jsonl"
    _bench().main(["--data", str(sample), "--seeds", "1", "--seed-size", "5", "--batch", "5", "--budget", "40"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["strategy"] == "entropy"
    assert result["efficiency_ratio"] == pytest.approx(
        result["random_labels_to_target"] / result["labels_to_target"], abs=1e-3
    )
    assert "simple_learner" in result["learner"]
