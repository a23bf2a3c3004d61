"""The learned candidate selector: fitting, ranking, artifact identity, use inside the search."""

from __future__ import annotations

import numpy as np

from app.inference.search import SearchConfig, search_with
from app.inference.selector import (
    FEATURES, Selector, fit_selector, load_selector, rank_accuracy, save_selector, selector_path, versioned,
)
from app.inference.solve import WithSelector, solve
from tests.inference_helpers import NATALIA, FakeSpecialists, natalia

F = len(FEATURES)
INTEGER = FEATURES.index("is_integer")
SHARE = FEATURES.index("share")


def _candidates(rng: np.random.Generator, right_first: bool) -> tuple[np.ndarray, list[bool]]:
    """Three answer groups: the right one is the only integer, often with less vote share."""
    x = rng.normal(size=(3, F))
    x[:, INTEGER] = [0.0, 0.0, 0.0]
    right = 0 if right_first else 2
    x[right, INTEGER] = 1.0
    x[:, SHARE] = [0.6, 0.3, 0.1]  # the vote's order
    return x, [i == right for i in range(3)]


def test_a_fitted_selector_ranks_the_right_candidate_first():
    rng = np.random.default_rng(0)
    train = [_candidates(rng, right_first=i % 4 == 0) for i in range(80)]
    selector = fit_selector(train, l2=1e-2)
    assert selector.features == FEATURES
    assert selector.weights[INTEGER] > 0.5  # it learnt that integers are right here
    held_out = [_candidates(rng, right_first=False) for _ in range(20)]
    assert rank_accuracy(None, held_out) == 0.0  # the vote picks the largest share: wrong
    assert rank_accuracy(selector, held_out) == 1.0
    x, labels = held_out[0]
    assert int(np.argmax(selector.scores(x))) == labels.index(True) == 2


def test_selector_artifact_round_trips_with_its_sha256_and_names_the_pipeline(tmp_path):
    selector = Selector(FEATURES, (0.0,) * F, (1.0,) * F, tuple(float(i) for i in range(F)))
    version = "C1v12.C2v12.C3v12.C4v12.C5v12.C6v12"
    path = selector_path(tmp_path, version)
    saved = save_selector(selector, path, {"fitted_on": "train"})
    loaded = load_selector(path)
    assert loaded == saved and len(saved.sha256) == 64
    assert path == tmp_path / "models" / "selector" / version / "selector.json"
    name = versioned(version, loaded)
    assert name == f"{version}.S{saved.sha256[:8]}" and len(name) <= 64
    assert versioned(version, None) == version
    assert load_selector(tmp_path / "missing.json") is None


def test_search_reranks_answer_groups_with_the_selector():
    proposal, c3 = natalia()
    plain = search_with(proposal, c3)
    assert plain.answer == "72" and len(plain.candidates) > 1
    assert len(plain.features) == len(plain.candidates) and len(plain.features[0]) == F
    # A selector that votes against the vote's winner picks the runner-up instead.
    weights = [0.0] * F
    weights[FEATURES.index("vote_rank0")] = -10.0
    weights[FEATURES.index("log_mass")] = 1.0
    contrarian = Selector(FEATURES, (0.0,) * F, (1.0,) * F, tuple(weights), "ab" * 32)
    proposal, c3 = natalia()
    picked = search_with(proposal, c3, SearchConfig(selector=contrarian))
    assert picked.answer == plain.candidates[1]["answer"] != "72"
    assert [c["answer"] for c in picked.candidates][-1] == "72"  # the vote's winner now ranks last
    assert sorted(c["answer"] for c in picked.candidates) == sorted(c["answer"] for c in plain.candidates)
    assert picked.program["steps"][-1]["result"] == picked.answer


def test_solve_with_a_selector_uses_it_and_suffixes_the_model_version():
    weights = [0.0] * F
    weights[FEATURES.index("vote_rank0")] = -10.0
    contrarian = Selector(FEATURES, (0.0,) * F, (1.0,) * F, tuple(weights), "cd" * 32)
    specialists = WithSelector(FakeSpecialists({NATALIA: natalia()}), contrarian)
    (solution,) = solve([NATALIA], specialists)
    assert solution.model_version == "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1.Scdcdcdcd"
    assert solution.answer != "72"
