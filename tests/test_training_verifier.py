"""The program verifier: candidate sampling, training, artifact identity, use by the selector."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from sqlalchemy import select

from app.db.models import Problem, Split
from app.errors import UserError
from app.inference.search import AnswerGroup, Executed, Path, PlannedStep
from app.inference.selector import FEATURES, Selector, group_features, save_selector, selector_path
from app.inference.solve import WithSelector, solve
from app.inference.store import with_selector
from training.checkpoint import WEIGHTS, artifact_sha256
from training.verifier import (
    VERIFIER_DIR, LoadedVerifier, batch_logits, candidate_programs, collate, listwise_loss, path_stats,
    VerifierHead, save_verifier, step_value_keys, train_verifier, value_features, verifier_corpus, warm_start,
)
from training.heads import HeadConfig
from training.prefix import batch_prefix_logits


def _group(answer: int, scores: list[float], verified: list[float | None], n_steps: int = 1) -> AnswerGroup:
    step = PlannedStep("ADD", 0.9, (("problem", 0, "literal"), ("problem", 1, "literal")), (0.8, 0.7))
    members = [Executed(Path(n_steps, 0.5, (step,) * n_steps, s), Fraction(answer), str(answer), s, v)
               for s, v in zip(scores, verified)]
    return AnswerGroup(str(answer), Fraction(answer), sum(scores), members)


def test_candidate_programs_put_right_groups_first_and_cap_the_rest():
    groups = [_group(i, [0.5 - i / 100], [None]) for i in range(30)]
    correct = [i in (3, 20) for i in range(30)]
    paths, labels = candidate_programs(groups, correct, limit=16, positives=4)
    assert len(paths) == 16 and labels[:2] == [1, 1] and sum(labels) == 2
    assert paths[0] is groups[3].members[0].path
    assert paths[2] is groups[0].members[0].path  # then the wrong ones, vote order



def test_reference_positives_skip_right_answers_reached_by_accident():
    """With the reference program's step results, a right group contributes the path that
    computes them (in any order), not its best path; a group right only by accident is left out."""
    def executed(values: tuple) -> Executed:
        step = PlannedStep("ADD", 0.9, (("problem", 0, "literal"), ("problem", 1, "literal")), (0.8, 0.7))
        path = Path(len(values), 0.5, (step,) * len(values), 0.1, tuple(Fraction(v) for v in values))
        return Executed(path, Fraction(values[-1]), str(values[-1]), 0.1)

    accidental, reasoned = executed((9, 10)), executed((Fraction(1, 2), 10))
    right = AnswerGroup("10", Fraction(10), 0.2, [accidental, reasoned])
    lucky = AnswerGroup("10", Fraction(10), 0.1, [executed((5, 10))])
    wrong = AnswerGroup("7", Fraction(7), 0.3, [executed((3, 7))])
    reference = step_value_keys(["10", "0.5"])  # 0.5 and 1/2 are one value; order does not matter
    assert reference == step_value_keys([Fraction(1, 2), Fraction(10)])
    paths, labels = candidate_programs([wrong, right, lucky], [False, True, True], reference=reference)
    assert paths == [reasoned.path, wrong.members[0].path] and labels == [1, 0]
    paths, labels = candidate_programs([wrong, right, lucky], [False, True, True])  # the answer rule
    assert paths == [accidental.path, lucky.members[0].path, wrong.members[0].path] and labels == [1, 1, 0]


def test_value_features_mark_sign_kind_and_magnitude_per_step():
    import sympy

    x = value_features((Fraction(72), Fraction(-3, 2), Fraction(0), Fraction(1, 3), sympy.sqrt(2)))
    assert x.shape == (8, 3)
    assert x[:5, 0].tolist() == [1, 2, 3, 1, 1]  # positive, negative, zero …
    assert x[:5, 1].tolist() == [1, 2, 1, 3, 3]  # integer, two decimals (-1.5), integer (0), other, other
    assert x[0, 2] == 1 + 3 and x[3, 2] == -1 + 3  # floor(log10 72) = 1, floor(log10 1/3) = -1
    assert (x[5:] == 0).all()
    # A value beyond float range (a long chain of MULs in a TRAIN candidate) is not a crash.
    huge = value_features((Fraction(10) ** 400, -Fraction(10) ** 400))
    assert huge[:2, 0].tolist() == [1, 2] and huge[:2, 1].tolist() == [1, 1]
    assert huge[0, 2] == huge[1, 2] == 11  # not finite as a float: the "unreadable" bucket


def test_path_stats_and_the_listwise_loss():
    path = _group(5, [0.25], [None], n_steps=2).members[0].path
    stats = path_stats(path)
    assert stats == pytest.approx([np.log(0.25) / 10, np.log(0.5) / 5, 2 * np.log(0.9) / 5,
                                   2 * np.log(0.8 * 0.7) / 10, 2 / 8], abs=1e-6)
    logits = torch.tensor([2.0, 0.0, 0.0, 5.0, 1.0])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    problem = torch.tensor([0, 0, 0, 1, 1])  # problem 1 has no right candidate: left out
    expected = -torch.log_softmax(logits[:3], 0)[0]
    assert torch.isclose(listwise_loss(logits, target, problem), expected)


def test_verifier_features_read_the_logits_of_each_group():
    groups = [_group(5, [0.6, 0.1], [-1.0, 2.5]), _group(7, [0.3], [0.5])]
    x = group_features(groups, 3, [Fraction(2), Fraction(3)], [0.9, 0.9])
    col = {name: i for i, name in enumerate(FEATURES)}
    assert x[0, col["verifier_best"]] == -1.0 and x[0, col["verifier_max"]] == 2.5
    assert x[1, col["verifier_best"]] == x[1, col["verifier_max"]] == 0.5
    assert list(x[:, col["verifier_top"]]) == [1.0, 0.0]
    assert list(x[:, col["log_op_p"]]) == pytest.approx([np.log(0.9)] * 2)
    assert list(x[:, col["log_operand_p"]]) == pytest.approx([np.log(0.8 * 0.7)] * 2)
    unscored = group_features([_group(5, [0.6], [None])], 1, [Fraction(2)], [0.9])
    assert unscored[0, col["verifier_best"]] == unscored[0, col["verifier_top"]] == 0.0


def test_verifier_weighted_vote_pools_each_groups_sigmoids():
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    groups = [_group(5, [0.6, 0.1], [-1.0, 2.5]), _group(7, [0.3], [0.5])]
    x = group_features(groups, 3, [Fraction(2), Fraction(3)], [0.9, 0.9])
    col = {name: i for i, name in enumerate(FEATURES)}
    votes = [sig(-1.0) + sig(2.5), sig(0.5)]
    assert list(x[:, col["verifier_vote"]]) == pytest.approx(np.log(votes))
    assert list(x[:, col["verifier_vote_share"]]) == pytest.approx([v / sum(votes) for v in votes])
    assert x[0, col["verifier_mass"]] == pytest.approx(np.log(0.6 * sig(-1.0) + 0.1 * sig(2.5)))
    # Two paths the verifier likes outvote one it likes more: the pooled vote, not the max.
    assert x[0, col["verifier_vote"]] > x[1, col["verifier_vote"]]
    unscored = group_features([_group(5, [0.6], [None])], 1, [Fraction(2)], [0.9])
    assert unscored[0, col["verifier_vote"]: col["verifier_mass"] + 1].tolist() == [0.0, 0.0, 0.0]
    # Logits far beyond exp's range are no overflow.
    extreme = group_features([_group(5, [0.6], [800.0]), _group(7, [0.3], [-800.0])], 2, [Fraction(2)], [0.9])
    assert extreme[:, col["verifier_vote_share"]].tolist() == pytest.approx([1.0, 0.0])


def test_selector_features_of_the_best_path_and_the_answer_shape():
    groups = [_group(5, [0.6], [None], n_steps=2), _group(30, [0.2], [None]), _group(Fraction(1, 2), [0.1], [None])]
    x = group_features(groups, 3, [Fraction(2), Fraction(3)], [0.9, 0.9])
    col = {name: i for i, name in enumerate(FEATURES)}
    assert list(x[:, col["log_min_operand_p"]]) == pytest.approx([np.log(0.7)] * 3)
    assert list(x[:, col["log_min_op_p"]]) == pytest.approx([np.log(0.9)] * 3)
    # 2 steps: 2 ops + 4 operands + the stop = 7 decisions; 1 step: 1 + 2 + 1 = 4.
    assert list(x[:, col["log_best_per_decision"]]) == pytest.approx([np.log(0.6) / 7, np.log(0.2) / 4, np.log(0.1) / 4])
    assert list(x[:, col["round_ten"]]) == [0.0, 1.0, 0.0]
    assert list(x[:, col["unit_fraction"]]) == [0.0, 0.0, 1.0]
    assert list(x[:, col["above_mentions"]]) == [1.0, 1.0, 0.0]  # 5 and 30 exceed 3; 1/2 does not
    assert list(x[:, col["last_add"]]) == [1.0] * 3 and x[:, col["last_sub"]: col["last_div"] + 1].sum() == 0


def test_verifier_trains_saves_loads_and_feeds_the_selector(db_session, trained, home):
    ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))[:12]
    texts = [db_session.get(Problem, i).text for i in ids]
    rows = []
    for text, solution in zip(texts, solve(texts, trained)):
        if solution.ranking and solution.ranking.groups:
            groups = solution.ranking.groups
            rows.append((text, solution.ranking, [k == len(groups) - 1 for k in range(len(groups))]))
    assert len(rows) >= 4, "the tiny specialists should execute programs for most fixture problems"
    c3 = trained.specialists["C3"]
    ops, constants = c3.maps["ops"], c3.maps["constants"]
    corpus, examples = verifier_corpus(rows, c3.backbone, ops, constants)
    assert [e.labels[0] for e in examples] == [1] * len(examples)  # the right group comes first
    head, metrics = train_verifier(corpus, examples, corpus, examples, len(ops), c3.backbone.hidden_size, epochs=2)
    assert 0.0 <= metrics["dev_top1"] <= 1.0 and 1 <= len(metrics["history"]) <= 2

    directory = selector_path(home, trained.model_version).parent / VERIFIER_DIR
    sha = save_verifier(directory, head, ops, constants, c3.backbone, metrics)
    loaded = LoadedVerifier(directory)
    assert loaded.sha256 == sha == artifact_sha256(directory)
    # The loaded verifier scores a problem's programs exactly as the trained head did.
    text, ranking, _ = rows[0]
    with torch.no_grad():
        expected = batch_logits(head, collate(corpus, examples[:1])).tolist()
    assert len(expected) == len(examples[0].programs)
    paths, _ = candidate_programs(ranking.groups, [k == len(ranking.groups) - 1 for k in range(len(ranking.groups))])
    assert loaded.logits(text, paths) == pytest.approx(expected, abs=1e-5)

    # A selector naming the verifier loads with it; its features then carry the logits.
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("verifier_max")] = 1.0
    selector = Selector(FEATURES, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), tuple(weights),
                        verifier_sha256=sha)
    save_selector(selector, selector_path(home, trained.model_version))
    pipeline = with_selector(trained)
    assert isinstance(pipeline, WithSelector) and pipeline.verifier.sha256 == sha
    (solution,) = solve([text], pipeline)
    column = FEATURES.index("verifier_max")
    assert any(row[column] != 0.0 for row in solution.features)
    best = max(range(len(solution.features)), key=lambda i: solution.features[i][column])
    assert solution.answer == solution.candidates[best]["answer"]  # the verifier's favourite wins

    # A verifier changed after the selector was fitted is refused with one clear line.
    (directory / WEIGHTS).write_bytes((directory / WEIGHTS).read_bytes() + b" ")
    with pytest.raises(UserError, match="does not match its sha256"):
        with_selector(trained)


def test_warm_started_verifier_begins_as_c6s_stop_head(db_session, trained):
    """Before training, a verifier warm-started from C6's stop head gives every complete program
    the stop head's logit difference (stop − go on); training then moves it."""
    ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))[:8]
    texts = [db_session.get(Problem, i).text for i in ids]
    rows = [(text, s.ranking, [k == 0 for k in range(len(s.ranking.groups))])
            for text, s in zip(texts, solve(texts, trained)) if s.ranking and s.ranking.groups]
    c3, stop = trained.specialists["C3"], trained.specialists["C6"].head.stop
    ops, constants = c3.maps["ops"], c3.maps["constants"]
    corpus, examples = verifier_corpus(rows, c3.backbone, ops, constants)
    cfg = HeadConfig(**trained.specialists["C6"].config["head_config"])
    head = VerifierHead(cfg, len(ops))
    assert warm_start(head, stop) > 10
    head.eval()
    batch = collate(corpus, examples)
    with torch.no_grad():
        two_way = batch_prefix_logits(stop, batch)
        assert batch_logits(head, batch).numpy() == pytest.approx((two_way[:, 1] - two_way[:, 0]).numpy(), abs=1e-5)
    trained_head, metrics = train_verifier(corpus, examples, corpus, examples, len(ops), c3.backbone.hidden_size,
                                           epochs=1, init=stop, lr=3e-4, head_config=cfg)
    assert metrics["warm_start"] == "C6 stop head" and [h["epoch"] for h in metrics["history"]] == [0, 1]
    with torch.no_grad():
        assert not torch.allclose(batch_logits(trained_head, batch), batch_logits(head, batch))
    # A head of another width is not a warm start: nothing is copied.
    narrow = VerifierHead(HeadConfig(hidden_size=c3.backbone.hidden_size, width=cfg.width * 2), len(ops))
    assert warm_start(narrow, stop) == 0


def test_selector_collection_caches_chunks_and_reads_them_back(db_session, trained, home, monkeypatch):
    """training.selector's search cache: one pickle per chunk of problems, named by its first
    problem id; a second run (here without any specialists) reads every chunk back."""
    import training.selector as fitting
    from app.inference.search import SearchConfig

    monkeypatch.setattr(fitting, "CHUNK", 5)
    ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))[:12]
    cache = home / "cache" / "selector" / "test"
    rows = fitting.collect(db_session, trained, ids, SearchConfig(), cache, "train_t")
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"train_t_{ids[k]}_{n}.pkl" for k, n in ((0, 5), (5, 5), (10, 2)))
    assert [text for text, _, _ in rows] == [db_session.get(Problem, i).text for i in ids]
    assert all(len(labels) == len(ranking.groups) for _, ranking, labels in rows)
    again = fitting.collect(db_session, None, ids, SearchConfig(), cache, "train_t")
    assert [(t, labels) for t, _, labels in again] == [(t, labels) for t, _, labels in rows]
    tail = fitting.collect(db_session, None, ids[5:], SearchConfig(), cache, "train_t")  # a range on chunk bounds
    assert [t for t, _, _ in tail] == [t for t, _, _ in rows[5:]]


def test_reading_order_features_prefer_neighbouring_numbers_read_in_order():
    """ "three toys at $10 each, two packs at $5 each": mentions 0..3 are 3, 10, 2, 5."""
    def group(answer: int, steps: list[tuple[str, tuple]]) -> AnswerGroup:
        planned = tuple(PlannedStep(op, 0.9, operands, (0.8,) * len(operands)) for op, operands in steps)
        path = Path(len(planned), 0.5, planned, 0.1)
        return AnswerGroup(str(answer), Fraction(answer), 0.1, [Executed(path, Fraction(answer), str(answer), 0.1)])

    m = lambda i: ("problem", i, "literal")  # noqa: E731
    paired = group(40, [("MUL", (m(0), m(1))), ("MUL", (m(2), m(3))), ("ADD", (("step", 0), ("step", 1)))])
    crossed = group(35, [("MUL", (m(2), m(1))), ("MUL", (m(0), m(3))), ("ADD", (("step", 0), ("step", 1)))])
    x = group_features([crossed, paired], 4, [Fraction(v) for v in (3, 10, 2, 5)], [0.9] * 4)
    col = {name: i for i, name in enumerate(FEATURES)}
    assert list(x[:, col["pair_gap"]]) == [2.0, 1.0]  # |2 − 1| and |0 − 3| vs neighbours
    # first reads 2, 1, 0, 3: two of three moves go backwards; 0, 1, 2, 3: none
    assert list(x[:, col["read_inversions"]]) == pytest.approx([2 / 3, 0.0])


def test_verifier_without_path_stats_ignores_the_searchs_scores(db_session, trained, home):
    """Built with ``with_path_stats=False`` the verifier has no path-statistics input: changing a
    path's search scores leaves its logit as it is (with them, the logit moves), and the switch
    survives saving and loading."""
    ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))[:8]
    texts = [db_session.get(Problem, i).text for i in ids]
    rows = [(text, s.ranking, [k == 0 for k in range(len(s.ranking.groups))])
            for text, s in zip(texts, solve(texts, trained)) if s.ranking and s.ranking.groups]
    c3 = trained.specialists["C3"]
    ops, constants = c3.maps["ops"], c3.maps["constants"]
    corpus, examples = verifier_corpus(rows, c3.backbone, ops, constants)
    batch = collate(corpus, examples)
    moved = {**batch, "stats": batch["stats"] + 3.0}
    torch.manual_seed(0)
    plain = VerifierHead(HeadConfig(hidden_size=c3.backbone.hidden_size), len(ops), with_path_stats=False).eval()
    scored = VerifierHead(HeadConfig(hidden_size=c3.backbone.hidden_size), len(ops)).eval()
    assert plain.stats is None
    with torch.no_grad():
        assert torch.equal(batch_logits(plain, batch), batch_logits(plain, moved))
        assert not torch.allclose(batch_logits(scored, batch), batch_logits(scored, moved))
    head, metrics = train_verifier(corpus, examples, corpus, examples, len(ops), c3.backbone.hidden_size,
                                   epochs=1, with_path_stats=False)
    assert metrics["path_stats"] is False and head.stats is None
    directory = home / "verifier_without_stats"
    save_verifier(directory, head, ops, constants, c3.backbone, metrics)
    loaded = LoadedVerifier(directory)
    assert loaded.head.stats is None
    text, ranking, labels = rows[0]
    paths, _ = candidate_programs(ranking.groups, labels)
    with torch.no_grad():
        expected = batch_logits(head, collate(corpus, examples[:1])).tolist()
    assert loaded.logits(text, paths) == pytest.approx(expected, abs=1e-5)


def test_cross_fitted_verifier_scores_each_dev_problem_with_a_fold_that_did_not_see_it(db_session, trained, home):
    """``--verifier-data train+dev``: one verifier per DEV fold scores that fold (so the selector
    is fitted on held-out logits), the saved one learns from TRAIN and all of DEV, and a rerun
    with ``--reuse-verifier`` reproduces every DEV logit without training."""
    import argparse

    import training.selector as fitting
    from app.inference.search import SearchConfig
    from training.verifier import CONFIG as VERIFIER_CONFIG

    ids = list(db_session.scalars(select(Problem.id).where(Problem.split == Split.TRAIN).order_by(Problem.id)))[:16]
    rows = fitting.collect(db_session, trained, ids, SearchConfig())
    rows = [r for r in rows if r[1].groups]
    split = {"train": rows[:8], "dev": rows[8:]}
    assert len(split["dev"]) >= 4
    args = argparse.Namespace(verifier_data="train+dev", verifier_folds=2, reuse_verifier=False, epochs=2,
                              verifier_init="none", verifier_lr=None, verifier_path_stats="on")
    directory = home / "selector_dir"
    sha, meta = fitting.verify_dev(trained, split, directory, args)
    folds = fitting.dev_folds(len(split["dev"]), 2)
    assert sorted(i for f in folds for i in f) == list(range(len(split["dev"])))
    assert {p.name for p in directory.iterdir()} == {"verifier", "verifier_fold0of2", "verifier_fold1of2"}
    assert meta["data"] == "train+dev (cross-fitted)" and len(meta["fold_dev_top1"]) == 2
    assert meta["train_problems"] == len(rows)  # the saved verifier learned from TRAIN and all of DEV
    logits = [m.verified for _, r, _ in split["dev"] for g in r.groups for m in g.members]
    assert all(v is not None for v in logits)
    # Each fold's logits are its own verifier's, not the saved one's.
    held = [split["dev"][i] for i in folds[0]]
    fold0 = LoadedVerifier(directory / "verifier_fold0of2")
    text, ranking, _ = held[0]
    members = [m for g in ranking.groups for m in g.members]
    assert [m.verified for m in members] == pytest.approx(fold0.logits(text, [m.path for m in members]), abs=1e-5)
    saved = (directory / "verifier" / VERIFIER_CONFIG).read_bytes()
    for _, r, _ in split["dev"]:
        for g in r.groups:
            for m in g.members:
                m.verified = None
    again_sha, _ = fitting.verify_dev(trained, split, directory, argparse.Namespace(**{**vars(args), "reuse_verifier": True}))
    assert again_sha == sha and (directory / "verifier" / VERIFIER_CONFIG).read_bytes() == saved
    assert [m.verified for _, r, _ in split["dev"] for g in r.groups for m in g.members] == pytest.approx(logits, abs=1e-6)
