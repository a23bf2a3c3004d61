"""IO tags ↔ char regions for any tokenizer (a contiguous run of I is one region)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.signals.alignment import token_char_spans, trim_span
from app.signals.iotags import TAG_I, TAG_O, io_tags_from_regions, regions_from_io_tags
from tests.helpers_tokenizers import default_bpe_tokenizer, minilm_tokenizer

NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)


@pytest.fixture(scope="module", params=["minilm", "bpe"])
def tokenizer(request: pytest.FixtureRequest):
    return minilm_tokenizer() if request.param == "minilm" else default_bpe_tokenizer()


def _region(text: str, piece: str) -> tuple[int, int]:
    start = text.index(piece)
    return start, start + len(piece)


def test_regions_to_tags_and_back(tokenizer) -> None:
    regions = [_region(NATALIA, "sold clips to 48"), _region(NATALIA, "half as many clips")]
    offsets = token_char_spans(tokenizer, NATALIA, add_special_tokens=True)
    tags = io_tags_from_regions(regions, offsets)
    assert tags.dtype == np.int8 and set(np.unique(tags)) == {TAG_O, TAG_I}
    tagged = [NATALIA[s:e].strip() for (s, e), t in zip(offsets, tags, strict=True) if t == TAG_I]
    assert "".join(tagged) == "soldclipsto48halfasmanyclips"
    special = offsets[:, 1] == offsets[:, 0]  # [CLS]/[SEP] for MiniLM; none for the BPE
    assert (tags[special] == TAG_O).all()
    back = regions_from_io_tags(tags, offsets, NATALIA)
    assert [NATALIA[s:e] for s, e in back] == ["sold clips to 48", "half as many clips"]


def test_partial_word_region_tags_the_whole_token_and_adjacent_regions_merge(tokenizer) -> None:
    offsets = token_char_spans(tokenizer, NATALIA)
    s = NATALIA.index("altogether")
    tags = io_tags_from_regions([(s + 2, s + 4)], offsets)  # "to" inside "altogether"
    back = regions_from_io_tags(tags, offsets, NATALIA)
    assert len(back) == 1 and back[0, 0] <= s + 2 and back[0, 1] >= s + 4
    assert NATALIA[back[0, 0] : back[0, 1]] in "altogether"
    two = [_region(NATALIA, "sold"), _region(NATALIA, "clips to")]  # touching token runs: one region
    merged = regions_from_io_tags(io_tags_from_regions(two, offsets), offsets, NATALIA)
    assert [NATALIA[a:b] for a, b in merged] == ["sold clips to"]


def test_empty_inputs() -> None:
    offsets = np.array([[0, 0], [0, 3], [4, 6]])
    assert io_tags_from_regions(np.zeros((0, 2)), offsets).tolist() == [0, 0, 0]
    assert regions_from_io_tags([0, 0, 0], offsets).shape == (0, 2)
    assert regions_from_io_tags([1, 0, 0], offsets).shape == (0, 2)  # an I on a special token has no chars
    with pytest.raises(ValueError):
        regions_from_io_tags([1, 0], offsets)


TEXTS = st.lists(
    st.sampled_from(
        ["Natalia", " sold", " 1,000", " $3.50", " 50%", " clips", ",", " 東京", " ½", " $x^2$", " Zoë", "  "]
    ),
    min_size=1,
    max_size=25,
).map("".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, data=st.data())
def test_tags_regions_tags_property(tokenizer, text: str, data: st.DataObject) -> None:
    offsets = token_char_spans(tokenizer, text)
    n = len(offsets)
    assume(n > 0)
    tags = np.array(data.draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n)), dtype=np.int8)
    regions = regions_from_io_tags(tags, offsets, text)
    again = io_tags_from_regions(regions, offsets)
    # Regions are sorted, strictly separated and whitespace-trimmed.
    assert all(a[1] < b[0] for a, b in zip(regions[:-1], regions[1:], strict=True))
    assert all(text[s:e] == text[s:e].strip() and e > s for s, e in regions)
    # One round trip reaches a fixed point (a byte-level token straddling two characters can join
    # two runs once; after that nothing changes).
    regions2 = regions_from_io_tags(again, offsets, text)
    np.testing.assert_array_equal(io_tags_from_regions(regions2, offsets), again)
    np.testing.assert_array_equal(
        regions_from_io_tags(io_tags_from_regions(regions2, offsets), offsets, text), regions2
    )
    # Every tagged token with visible text stays tagged.
    visible = np.array([bool(text[s:e].strip()) for s, e in offsets])
    assert np.all(again[visible] >= tags[visible])
    # Exact identity when no token shares a character with another and no run edge is blank
    # (always true for WordPiece, whose tokens are disjoint and never blank).
    overlaps = (offsets[:, None, 0] < offsets[None, :, 1]) & (offsets[:, None, 1] > offsets[None, :, 0])
    disjoint = (overlaps.sum(axis=1) == 1).all()
    edges = np.flatnonzero(np.diff(np.r_[0, tags, 0]))
    blank_edge = any(not visible[i] for i in edges[0::2]) or any(not visible[i - 1] for i in edges[1::2])
    if disjoint and not blank_edge and visible.all():
        np.testing.assert_array_equal(again, tags)
        np.testing.assert_array_equal(regions2, regions)
    if type(tokenizer.backend_tokenizer.model).__name__ == "WordPiece":
        assert disjoint and visible.all()
        np.testing.assert_array_equal(again, tags)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, data=st.data())
def test_regions_tags_regions_property(tokenizer, text: str, data: st.DataObject) -> None:
    offsets = token_char_spans(tokenizer, text)
    assume(len(offsets) > 0 and text.strip())
    k = data.draw(st.integers(1, 3))
    raw = []
    for _ in range(k):
        s = data.draw(st.integers(0, len(text) - 1))
        raw.append((s, data.draw(st.integers(s + 1, len(text)))))
    tags = io_tags_from_regions(raw, offsets)
    regions = regions_from_io_tags(tags, offsets, text)
    # Each original region's tokens are tagged, and lie inside one output region.
    for s, e in raw:
        touched = np.flatnonzero((offsets[:, 0] < e) & (offsets[:, 1] > s) & (offsets[:, 1] > offsets[:, 0]))
        assert (tags[touched] == TAG_I).all()
        visible = [i for i in touched if text[offsets[i, 0] : offsets[i, 1]].strip()]
        for i in visible:
            lo, hi = trim_span(text, int(offsets[i, 0]), int(offsets[i, 1]))
            assert any(a <= lo and hi <= b for a, b in regions), (text[lo:hi], regions)
    # And the tags are reproduced by the regions (a fixed point once normalised).
    again = io_tags_from_regions(regions, offsets)
    np.testing.assert_array_equal(io_tags_from_regions(regions_from_io_tags(again, offsets, text), offsets), again)
