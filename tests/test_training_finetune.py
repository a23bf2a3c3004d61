"""Backbone fine-tuning (training.finetune + registry.finetune_for_snapshot) on the tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training_helpers import make_snapshot, seed_labels, tiny_train_config

NATALIA = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_length_batches_cover_every_problem_once_in_similar_lengths() -> None:
    from training.finetune import length_batches

    lengths = list(range(100, 0, -1))
    batches = length_batches(lengths, 8, np.random.default_rng(0), pool=5)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(100)) and all(len(b) <= 8 for b in batches)
    # Within a batch the lengths are close: each pool of 40 is sorted before it is cut.
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) < 40


def test_live_corpus_pads_the_batch_states_with_their_mask() -> None:
    from training.finetune import LiveCorpus

    corpus = LiveCorpus([], [], live={3: torch.ones(2, 4), 7: torch.full((5, 4), 2.0)})
    states, mask = corpus.states([7, 3])
    assert states.shape == (2, 5, 4) and mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert states[1, :2].eq(1.0).all() and states[1, 2:].eq(0.0).all()


def test_finetune_trains_the_top_blocks_only_saves_once_and_specialists_train_on_it(
        db_session, home: Path, tmp_path: Path) -> None:
    from training.encoder import backbone_fingerprint, load_backbone
    from training.finetune import FinetuneConfig
    from training.loop import TrainingError
    from training.registry import finetune_for_snapshot, train_specialist
    from training.specialists import load_specialists
    from training.tiny import build_tiny_encoder

    seed_labels(db_session)
    make_snapshot(db_session)
    db_session.commit()
    base = build_tiny_encoder(tmp_path / "tiny", hidden_size=32, num_layers=2)
    config = FinetuneConfig(epochs=2, batch_size=8, train_layers=1, width=32, head_layers=1, encoder_lr=1e-3)
    epochs: list[dict] = []
    path, record, created = finetune_for_snapshot(db_session, backbone_path=str(base), config=config,
                                                  layers=(1, -1), device="cpu",
                                                  on_epoch=lambda epoch, entry: epochs.append(entry))
    assert created and path.parent == home / "backbones" and path.name.startswith("tiny-ft-")
    assert [e["epoch"] for e in epochs] == [1, 2] and record["best_epoch"] in (1, 2)
    assert set(record["history"][0]["dev_scores"]) <= {"C1", "C2", "C3", "C4", "C5", "C6"}
    saved = json.loads((path / "finetune.json").read_text())
    assert saved["base_fingerprint"] == backbone_fingerprint(base) and saved["layers"] == [1, -1]

    # Only the top block learned: the embeddings and block 0 are the base's, block 1 is not.
    before, after = _weights(base), _weights(path)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)
    assert any(k.startswith("encoder.layer.1.attention") for k in changed)

    # Another directory, another fingerprint: encoding caches and artifacts cannot mix them up.
    adapted, original = load_backbone(str(path), "cpu", layers=(1, -1)), load_backbone(str(base), "cpu", layers=(1, -1))
    assert adapted.fingerprint != original.fingerprint
    a, b = adapted.encode([NATALIA])[0], original.encode([NATALIA])[0]
    assert np.array_equal(a.states[:, :32], b.states[:, :32])  # layer 1 (block 0's output) is frozen
    assert not np.array_equal(a.states[:, 32:], b.states[:, 32:])  # the last layer moved

    # The same request again returns the saved directory without training.
    again, _, created_again = finetune_for_snapshot(db_session, backbone_path=str(base), config=config,
                                                    layers=(1, -1), device="cpu",
                                                    on_step=lambda *a: pytest.fail("trained again"))
    assert again == path and not created_again

    # Specialists train on it like on any Hugging Face directory and load with it.
    from dataclasses import replace

    train_config = replace(tiny_train_config(), backbone_layers=(1, -1))
    for specialist in ("C1", "C2", "C3", "C4", "C5", "C6"):
        train_specialist(db_session, specialist, backbone_path=str(path), config=train_config, device="cpu")
    db_session.commit()
    loaded = load_specialists(db_session)
    assert loaded.specialists["C3"].backbone.directory == path.resolve()
    (proposal,) = loaded.propose(["Natalia sold 48 clips in April and half as many in May."])
    assert proposal.answer_step_probs.sum() == pytest.approx(1.0, abs=1e-5)

    with pytest.raises(TrainingError, match=r"train_layers 3 > its 2 blocks"):
        finetune_for_snapshot(db_session, backbone_path=str(base), config=FinetuneConfig(train_layers=3), device="cpu")
    with pytest.raises(TrainingError, match="fine-tuning tasks"):
        FinetuneConfig(tasks=("C9",))
