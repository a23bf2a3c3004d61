"""bench/selector_models.py: within-problem features, fold bookkeeping and the boosted ranker."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.bench_module import bench_module


def _bench() -> ModuleType:
    return bench_module("selector_models")


def test_within_problem_adds_the_gap_to_the_best_group_and_the_rank() -> None:
    x = np.array([[1.0, 5.0], [3.0, 4.0], [2.0, 6.0]])
    out = _bench().within_problem(x)
    assert out.shape == (3, 6)
    np.testing.assert_array_equal(out[:, :2], x)
    np.testing.assert_array_equal(out[:, 2:4], [[-2.0, -1.0], [0.0, -2.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(out[:, 4:], [[2, 1], [0, 2], [1, 0]])  # 0 = the problem's highest
    assert _bench().within_problem(np.zeros((0, 2))).shape == (0, 6)


def synthetic(n: int, seed: int) -> list[tuple[np.ndarray, list[bool]]]:
    """Problems of 4 groups where the right one is the group whose feature 1 is highest, and
    feature 0 is noise: a ranker must learn a within-problem comparison."""
    rng = np.random.default_rng(seed)
    problems = []
    for _ in range(n):
        x = rng.normal(size=(4, 2)) + rng.normal(size=(1, 2)) * 3  # a per-problem offset
        problems.append((x, list(x[:, 1] == x[:, 1].max())))
    return problems


def test_boosted_ranker_learns_a_within_problem_rule() -> None:
    bench = _bench()
    train, test = synthetic(300, 0), synthetic(100, 1)
    assert bench.boosted_top1(train, test) >= 0.95
    assert bench.boosted_top1([(x[:, ::-1].copy(), y) for x, y in train], test) < 0.6  # trained on the noise


def test_out_of_fold_scores_every_dev_problem_once_with_a_ranker_that_never_saw_it() -> None:
    dev = [(np.full((2, 1), float(i)), [True, False]) for i in range(10)]
    seen: list[float] = []

    def fit_and_score(fit_on, test) -> float:
        fitted = {float(x[0, 0]) for x, _ in fit_on}
        held = [float(x[0, 0]) for x, _ in test]
        assert not fitted & set(held) and -1.0 in fitted  # the extra problems are always in
        seen.extend(held)
        return 0.5

    extra = [(np.full((2, 1), -1.0), [False, True])]
    assert _bench().out_of_fold(dev, extra, fit_and_score) == pytest.approx(0.5)
    assert sorted(seen) == [float(i) for i in range(10)]


def test_missing_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no cached dev candidates"):
        _bench().cached_rows(tmp_path, "dev", "gsm8k_t0.85_k3_p100")
