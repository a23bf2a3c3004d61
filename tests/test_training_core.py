"""Pure parts of training: calibration math, label → example arrays, deterministic loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax

from training.calibration import binary_logits, calibrate, classification_metrics, ece, fit_temperature, majority_baseline
from training.examples import (
    IGNORE,
    ProblemData,
    c3_examples,
    c5_examples,
    c6_examples,
    constant_vocabulary,
    mention_token_matrix,
    mentions_of,
    op_vocabulary,
    token_targets,
)

NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
NATALIA_LABELS = {
    "C1": {"regions": [[0, 47], [54, 92]], "operand_spans": [[22, 24], [68, 72]]},
    "C2": {"steps": [{"step": 1, "op": "DIV", "region": [0, 92]}, {"step": 2, "op": "ADD", "region": [0, 47]}]},
    "C3": {"steps": [
        {"step": 1, "op": "DIV", "operands": [
            {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"},
            {"kind": "problem", "start": 68, "end": 72, "value": "2", "reading": "reciprocal"}]},
        {"step": 2, "op": "ADD", "operands": [
            {"kind": "problem", "start": 22, "end": 24, "value": "48", "reading": "literal"},
            {"kind": "step", "ref": 1}]}]},
    "C4": {"constants": []},
    "C5": {"n_steps": 2, "edges": [[1, 2]]},
    "C6": {"answer_step": 2, "n_steps": 2, "answer_type": "integer"},
}


def test_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    y = np.array([rng.choice(5, p=p) for p in softmax(true_logits, axis=1)])
    overconfident = true_logits * 3  # the model's logits: 3x too sharp
    assert fit_temperature(overconfident, y) == pytest.approx(3.0, rel=0.1)
    report = calibrate(overconfident, y)
    assert report["ece_before"] > 0.1 and report["ece_after"] < 0.03 and report["nll_after"] < report["nll_before"]
    assert report["ece_after_crossfit"] < 0.05 and 0.005 < report["ece_floor"] < 0.03


def test_ece_and_metrics_on_hand_cases() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])  # bin 0.9: acc 0.5 (|0.5-0.9|), bin 0.6: acc 1.0 (|1-0.6|)
    assert ece(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert softmax(binary_logits(np.array([0.0, 2.0])), axis=1)[1, 1] == pytest.approx(1 / (1 + np.exp(-2)))
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert m["accuracy"] == 0.75 and m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert majority_baseline(np.array([1, 1, 0]), np.array([1, 0])) == {"accuracy": 0.5, "macro_f1": pytest.approx(1 / 3)}


def test_examples_from_the_natalia_labels() -> None:
    record = ProblemData(1, NATALIA, NATALIA_LABELS)
    mentions = mentions_of(NATALIA)
    assert [(m.text, m.value) for m in mentions] == [("48", "48"), ("half", "0.5")]
    assert op_vocabulary([record]) == ["ADD", "DIV", "NONE"]
    assert constant_vocabulary([record], min_count=1) == []
    (first, second) = c3_examples([record], [mentions], ["ADD", "DIV", "NONE"], [])
    assert (first.slot, first.op, first.targets) == (0, 1, (("problem", 0, 0), ("problem", 1, 1), ("end",), ("ignore",)))
    assert second.targets == (("problem", 0, 0), ("step", 0), ("end",), ("ignore",))
    # Each step is conditioned on the gold steps before it (op index, operand targets).
    assert first.prefix == () and second.prefix == ((1, (("problem", 0, 0), ("problem", 1, 1))),)
    (c6,) = c6_examples([record], [mentions], ["ADD", "DIV", "NONE"], [])
    assert c6.answer_slot == 1
    assert c6.program == ((1, (("problem", 0, 0), ("problem", 1, 1))), (0, (("problem", 0, 0), ("step", 0))))
    assert c6_examples([record])[0].program == ()  # without mentions/ops: no stop examples
    (c5,) = c5_examples([record])
    assert c5.n_steps == 2 and c5.edges[0, 1] == 1 and c5.edges.sum() == 1

    starts = np.array([0, 0, 8, 22, 68, 0])  # [CLS] natalia sold 48 half [SEP] (char offsets)
    ends = np.array([0, 7, 12, 24, 72, 0])
    assert token_targets(starts, ends, [(20, 25)]).tolist() == [IGNORE, 0, 0, 1, 0, IGNORE]
    matrix = mention_token_matrix(starts, ends, mentions)
    assert matrix.shape == (2, 6) and matrix[0, 3] == 1.0 and matrix[1, 4] == 1.0 and matrix.sum() == 2.0


def test_training_is_deterministic_per_seed(tmp_path) -> None:
    from training.catalog import TASKS
    from training.encoder import encode_cached, load_backbone
    from training.loop import TrainConfig, train_task
    from training.tasks import Corpus
    from training.tiny import build_tiny_encoder

    backbone = load_backbone(str(build_tiny_encoder(tmp_path / "tiny")), "cpu")
    records = [ProblemData(i, NATALIA.replace("48", str(40 + i)), NATALIA_LABELS) for i in range(6)]
    encoded = encode_cached(backbone, [r.text for r in records])
    train, dev = Corpus(records[:4], encoded[:4]), Corpus(records[4:], encoded[4:])
    config = TrainConfig(epochs=2, batch_size=2, width=16, layers=1)
    runs = [train_task(TASKS["C3"], train, dev, config) for _ in range(2)]
    for (name, a), b in zip(runs[0].head.state_dict().items(), runs[1].head.state_dict().values()):
        assert torch.equal(a, b), name
    assert runs[0].metrics == runs[1].metrics


def test_backbone_layers_concatenate_hidden_states_and_name_the_features(tmp_path) -> None:
    from training.encoder import BackboneError, backbone_fingerprint, load_backbone
    from training.tiny import build_tiny_encoder

    directory = str(build_tiny_encoder(tmp_path / "tiny", hidden_size=32, num_layers=2))
    last = load_backbone(directory, "cpu")
    mixed = load_backbone(directory, "cpu", layers=(1, -1))
    # Last-layer features keep the directory's fingerprint (older artifacts stay loadable).
    assert last.fingerprint == backbone_fingerprint(Path(directory))
    assert mixed.fingerprint != last.fingerprint and mixed.hidden_size == 64 and last.hidden_size == 32
    a, b = last.encode([NATALIA])[0], mixed.encode([NATALIA])[0]
    assert b.states.shape == (a.states.shape[0], 64)
    assert np.array_equal(b.states[:, 32:], a.states)  # the last 32 columns are the last layer
    assert not np.array_equal(b.states[:, :32], a.states)  # layer 1 is not the last layer
    with pytest.raises(BackboneError, match=r"layers \[5\] outside its 3 hidden states"):
        load_backbone(directory, "cpu", layers=(5,))


def test_prefix_arrays_count_reads_and_consumed_steps() -> None:
    from app.inference.proposals import PrefixStep
    from training.prefix import contract_prefix, prefix_arrays

    # Natalia after both steps, written the way the search hands prefixes over.
    prefix = (PrefixStep("DIV", (("problem", 0, "literal"), ("problem", 1, "reciprocal"))),
              PrefixStep("ADD", (("problem", 0, "literal"), ("step", 0))),
              PrefixStep("MUL", (("step", 1), ("constant", "60"), ("constant", "7"))))
    steps = contract_prefix(prefix, {"ADD": 0, "DIV": 1, "MUL": 2, "NONE": 3}, ["60"])
    assert steps == [(1, (("problem", 0, 0), ("problem", 1, 1))), (0, (("problem", 0, 0), ("step", 0))),
                     (2, (("step", 1), ("constant", 0), ("ignore",)))]
    arrays = prefix_arrays(steps, n_mentions=3)
    assert arrays.n == 3 and arrays.used.tolist() == [2.0, 1.0, 0.0]
    assert arrays.ops[:4].tolist() == [1, 0, 2, 0] and arrays.consumed[:4].tolist() == [1, 1, 0, 0]
    assert arrays.mentions[0].tolist() == [0.5, 0.5, 0.0] and arrays.mentions[1].tolist() == [1.0, 0.0, 0.0]
    assert arrays.mentions[2].sum() == 0.0
    empty = prefix_arrays([], n_mentions=2)
    assert empty.n == 0 and empty.used.sum() == 0 and empty.consumed.sum() == 0


def test_mention_features_and_unread_rank() -> None:
    from training.examples import MAGNITUDES, mention_features
    from training.heads import unused_rank

    text = "Tom had 1,200 apples, sold 25% of them for $0.5 each and gave half of the rest away."
    mentions = mentions_of(text)
    assert [m.text for m in mentions] == ["1,200", "25%", "$0.5", "half"]
    features = mention_features(mentions, m_max=6)
    assert features.shape == (6, 3)
    # ordinal; floor(log10 |v|) + 3 of the literal value (1200 → 6, 25 → 4, 0.5 → 2, half = 0.5 → 2); kind
    assert features[:4, 0].tolist() == [0, 1, 2, 3] and features[:4, 1].tolist() == [6, 4, 2, 2]
    assert features[4:].sum() == 0 and MAGNITUDES == 12
    used = torch.tensor([[1.0, 0.0, 0.0, 2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False, False]])
    assert unused_rank(used, mask).tolist() == [[4, 0, 1, 4, 4, 4]]


@pytest.mark.parametrize("problems", [1, 2])
def test_factored_memory_attention_equals_the_written_out_memory(problems: int) -> None:
    """The decoder's eval-mode shortcut (keys/values projected once per problem) gives the same
    outputs as attending to the per-request memory written out, masks included."""
    from training.heads import FactoredMemory, HeadConfig, QueryDecoder

    torch.manual_seed(0)
    decoder = QueryDecoder(HeadConfig(hidden_size=16, width=32, layers=2, heads=4)).eval()
    b, t, k, levels = 40, 25, 8, 3
    mask = torch.ones(b, t + k, dtype=torch.bool)
    mask[:, t + 3:] = False  # slots past a 3-step prefix
    mask[::2, 20:t] = False  # padded tokens
    memory = FactoredMemory(torch.randn(problems, t, 32), torch.randint(0, problems, (b,)),
                            torch.randint(0, levels, (b, t)), torch.randn(levels, 32), torch.randn(b, k, 32), mask)
    queries = torch.randn(b, 3, 32)
    with torch.no_grad():
        fast = decoder(queries, memory)
        decoder.factored = False
        slow = decoder(queries, memory)
        dense = decoder(queries, memory.dense(), memory.mask)
    assert torch.allclose(fast, slow, atol=1e-5) and torch.equal(slow, dense)
    assert not torch.allclose(fast[0], fast[1], atol=1e-3)  # requests differ
