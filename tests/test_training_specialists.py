"""Specialists end to end on the fixtures with a tiny random encoder: train, register, load, propose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.models import SpecialistModel
from app.inference.proposals import ANSWER_TYPES, MAX_OPERANDS, MAX_STEPS, Chained, OperandRequest, PrefixStep
from tests.training_helpers import make_snapshot, seed_labels, tiny_train_config, train_tiny_specialists


def test_train_load_propose_and_round_trip(db_session, home: Path, tmp_path: Path) -> None:
    specialists = train_tiny_specialists(db_session, tmp_path / "tiny")
    assert specialists.model_version == "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1"
    rows = db_session.scalars(select(SpecialistModel).order_by(SpecialistModel.id)).all()
    assert [str(r.specialist) for r in rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    for row in rows:
        assert Path(row.artifact_path).is_dir() and len(row.artifact_sha256) == 64
        assert row.artifact_path == str(home / "models" / str(row.specialist) / "v1")
        heads = row.metrics["heads"]
        assert heads, row.specialist
        for head in heads.values():
            assert 0.0 <= head["ece_after"] <= 1.0 and head["temperature"] > 0
            assert {"accuracy", "macro_f1", "baseline", "ece_before"} <= set(head)

    text = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
    (proposal,) = specialists.propose([text])
    assert proposal.op_probs.shape == (MAX_STEPS, len(proposal.ops)) and proposal.ops[-1] == "NONE"
    np.testing.assert_allclose(proposal.op_probs.sum(axis=1), 1.0, rtol=1e-5)
    assert proposal.answer_step_probs.shape == (MAX_STEPS,)
    assert set(proposal.answer_type) == set(ANSWER_TYPES)
    assert proposal.depends.shape == (MAX_STEPS, MAX_STEPS) and np.all(np.tril(proposal.depends) == 0)
    assert proposal.relevance.shape == proposal.token_starts.shape == proposal.token_ends.shape
    assert text[proposal.token_starts[0]:proposal.token_ends[0]].lower() == "natalia"
    assert [m.text for m in proposal.mentions] == ["48", "half"]

    def after(positions, previous=("problem", 0, "literal")):  # positions ≥ 1 read the one before
        return [positions[0]] + [p.given(previous) if isinstance(p, Chained) else p for p in positions[1:]]

    top, specialists.operand_top = specialists.operand_top, None  # the full distributions
    (first, second) = specialists.operands(text, [OperandRequest(0, "DIV"), OperandRequest(1, "ADD")])
    assert len(first) == MAX_OPERANDS
    assert ("step", 0) not in first[0] and ("step", 0) in second[0]  # slot 0 has no earlier step
    assert ("problem", 1, "reciprocal") in first[0] and ("end",) in first[0]
    assert sum(first[0].values()) == pytest.approx(1.0, abs=1e-5)
    # C3 is chained: the second operand's distribution depends on the first one chosen.
    assert all(isinstance(p, Chained) for p in first[1:])
    assert sum(first[1].given(("problem", 0, "literal")).values()) == pytest.approx(1.0, abs=1e-5)
    assert first[1].given(("problem", 0, "literal")) != first[1].given(("problem", 1, "reciprocal"))
    specialists.operand_top = top  # the default: each position's 8 most probable candidates
    (truncated,) = specialists.operands(text, [OperandRequest(0, "DIV")])
    for full, kept in zip(after(first), after(truncated)):
        best = dict(sorted(full.items(), key=lambda item: -item[1])[:top])
        assert len(kept) <= 8 and set(kept) == set(best)
        assert kept == pytest.approx(best, abs=1e-6)
    first, second = truncated, specialists.operands(text, [OperandRequest(1, "ADD")])[0]

    # Prefix-conditioned heads: C2's next op, C3's operands and C6's stop read the partial program.
    assert {"next_op"} <= set(rows[1].metrics["heads"]) and {"stop"} <= set(rows[5].metrics["heads"])
    halved = (PrefixStep("DIV", (("problem", 0, "literal"), ("problem", 1, "reciprocal"))),)
    stops = specialists.stops(text, [halved, halved + (PrefixStep("ADD", (("problem", 0, "literal"), ("step", 0))),)])
    assert len(stops) == 2 and all(0.0 < p < 1.0 for p in stops) and stops[0] != stops[1]
    assert specialists.stops(text, []) == []
    (after_none, after_one) = specialists.next_ops(text, [(), halved])
    assert set(after_none) == set(proposal.ops) and sum(after_none.values()) == pytest.approx(1.0, abs=1e-5)
    assert after_none != after_one
    (plain, conditioned) = specialists.operands(text, [OperandRequest(1, "ADD"), OperandRequest(1, "ADD", halved)])
    assert plain[0] != conditioned[0]  # the mentions step 0 read are marked for C3

    # Round trip: loading the same versions again gives identical predictions.
    from training.specialists import load_specialists

    again = load_specialists(db_session, "C1v1.C2v1.C3v1.C4v1.C5v1.C6v1")
    (same,) = again.propose([text])
    np.testing.assert_array_equal(same.op_probs, proposal.op_probs)
    np.testing.assert_array_equal(same.relevance, proposal.relevance)
    assert [after(p) for p in again.operands(text, [OperandRequest(0, "DIV"), OperandRequest(1, "ADD")])] == [
        after(first), after(second)]


def test_retrain_same_snapshot_and_config_is_a_no_op(db_session, home: Path, tmp_path: Path) -> None:
    from training.registry import train_specialist
    from training.tiny import build_tiny_encoder

    seed_labels(db_session)
    make_snapshot(db_session)
    db_session.commit()
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    first = train_specialist(db_session, "C6", backbone_path=backbone, config=tiny_train_config(), device="cpu")
    db_session.commit()
    second = train_specialist(db_session, "C6", backbone_path=backbone, config=tiny_train_config(), device="cpu")
    assert (first.created, second.created) == (True, False)
    assert second.version == first.version == "v1" and second.id == first.id
    third = train_specialist(db_session, "C6", backbone_path=backbone, config=tiny_train_config(epochs=3), device="cpu")
    db_session.commit()
    assert third.created and third.version == "v2"
    assert db_session.scalar(select(func.count()).select_from(SpecialistModel)) == 2
    assert not list((home / "models" / "C6").glob(".staging-*"))


def test_backbone_layers_train_a_new_version_that_loads_with_the_same_layers(db_session, home: Path,
                                                                            tmp_path: Path) -> None:
    import json
    from dataclasses import replace

    from training.loop import TrainConfig
    from training.registry import train_specialist
    from training.specialists import load_specialists
    from training.tiny import build_tiny_encoder

    seed_labels(db_session)
    make_snapshot(db_session)
    db_session.commit()
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    config = replace(tiny_train_config(), backbone_layers=(1, -1))
    # A job's params carry the config as JSON: the layers come back as the same tuple.
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config
    last = train_specialist(db_session, "C6", backbone_path=backbone, config=tiny_train_config(), device="cpu")
    both = train_specialist(db_session, "C6", backbone_path=backbone, config=config, device="cpu")
    db_session.commit()
    assert (last.version, both.version) == ("v1", "v2") and both.created
    artifact = json.loads((home / "models" / "C6" / "v2" / "config.json").read_text())
    assert artifact["backbone"]["layers"] == [1, -1]
    for specialist in ("C1", "C2", "C3", "C4", "C5"):
        train_specialist(db_session, specialist, backbone_path=backbone, config=config, device="cpu")
    db_session.commit()
    loaded = load_specialists(db_session, "C1v1.C2v1.C3v1.C4v1.C5v1.C6v2")
    c6 = loaded.specialists["C6"]
    assert c6.backbone.layers == (1, -1) and c6.backbone.hidden_size == 2 * 32
    (proposal,) = loaded.propose(["Natalia sold 48 clips in April and half as many in May."])
    assert proposal.answer_step_probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_training_that_never_commits_leaves_no_row(db_session, home: Path, tmp_path: Path) -> None:
    """A process killed after the artifact rename but before its commit: no row; the next
    training takes the same version and replaces the orphan directory."""
    from training.registry import train_specialist
    from training.tiny import build_tiny_encoder

    seed_labels(db_session)
    make_snapshot(db_session)
    db_session.commit()
    backbone = str(build_tiny_encoder(tmp_path / "tiny"))
    lost = train_specialist(db_session, "C4", backbone_path=backbone, config=tiny_train_config(), device="cpu")
    db_session.rollback()
    assert db_session.scalar(select(func.count()).select_from(SpecialistModel)) == 0
    assert (home / "models" / "C4" / "v1").is_dir()  # orphan, named by no row
    kept = train_specialist(db_session, "C4", backbone_path=backbone, config=tiny_train_config(), device="cpu")
    db_session.commit()
    assert (lost.version, kept.version, kept.created) == ("v1", "v1", True)
    row = db_session.get(SpecialistModel, kept.id)
    from training.checkpoint import artifact_sha256

    assert artifact_sha256(Path(row.artifact_path)) == row.artifact_sha256
