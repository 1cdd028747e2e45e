"""Tests of the small helpers of eco_unlearn.fitting.pipeline: search ranges, deduplication and random splits.
(fit_guard itself loads the MiniLM encoder and is covered by the integration tests.)"""

from __future__ import annotations

import numpy as np
import pytest

from eco_unlearn.errors import CorruptionError
from eco_unlearn.fitting import default_strength_range
from eco_unlearn.fitting.classifier_fit import _dedupe, _split
from eco_unlearn.data.items import PromptItem, read_items


# ------------------------------------------------------------------------------- strength ranges


@pytest.mark.parametrize("name", ["gaussian_first_n", "gaussian_random_n", "gaussian_topk"])
def test_noise_range_is_a_thirtieth_to_thirty_embedding_scales(model, name):
    low, high, integer = default_strength_range(name, model)
    weights = model.get_input_embeddings().weight.detach().float()
    scale = float(weights.std())  # the tiny model: every id is sampled, so the scale is about this
    assert integer is False
    assert high / low == pytest.approx(900)
    assert high == pytest.approx(30 * scale, rel=0.1)
    assert low == pytest.approx(scale / 30, rel=0.1)
    assert 0 < low < high < float("inf")


@pytest.mark.parametrize("name", ["zero_first_n", "zero_topk", "flip_first_n", "flip_topk"])
def test_dimension_count_range_is_one_to_hidden_size(model, name):
    assert default_strength_range(name, model) == (1.0, float(model.config.hidden_size), True)
    assert model.config.hidden_size == 32


@pytest.mark.parametrize("name", ["shuffle", "reverse"])
def test_interpolation_range(model, name):
    assert default_strength_range(name, model) == (0.01, 1.0, False)


def test_unknown_corruption(model):
    with pytest.raises(CorruptionError, match="unknown corruption"):
        default_strength_range("melt", model)


# ------------------------------------------------------------------------------------- _dedupe


def test_dedupe_keeps_first_occurrence_in_order():
    items = read_items(["Who is Harry?", "What is Hogwarts?", "who  is HARRY?", "Paris", "what is hogwarts?\t", "paris"])
    kept = _dedupe(items)
    assert [i.prompt for i in kept] == ["Who is Harry?", "What is Hogwarts?", "Paris"]
    assert kept[0] is items[0]


def test_dedupe_ignores_answers():
    """Two items with the same prompt are one prompt, whatever their references."""
    items = [PromptItem("Q?", answer="a"), PromptItem("q?", answer="b"), PromptItem("Q? ", answer="c")]
    assert _dedupe(items) == [items[0]]


def test_dedupe_no_duplicates_is_identity():
    items = read_items(["a", "b", "a b", "ab"])
    assert _dedupe(items) == items


# -------------------------------------------------------------------------------------- _split


@pytest.mark.parametrize(
    "n,fractions,sizes",
    [
        (10, (0.75, 0.25), [7, 3]),
        (4, (0.75, 0.25), [3, 1]),
        (2, (0.75, 0.25), [1, 1]),
        (100, (0.5, 0.3, 0.2), [50, 30, 20]),
        (7, (0.6, 0.25, 0.15), [4, 1, 2]),  # cuts at floor(4.2) and floor(5.95)
        (0, (0.75, 0.25), [0, 0]),
    ],
)
def test_split_sizes_and_partition(n, fractions, sizes):
    parts = _split(n, fractions, np.random.default_rng(0))
    assert [len(p) for p in parts] == sizes
    joined = np.concatenate(parts) if parts else np.array([])
    assert sorted(joined.tolist()) == list(range(n))  # a partition: every index exactly once


def test_split_is_seeded_and_shuffled():
    a = _split(50, (0.6, 0.4), np.random.default_rng(3))
    b = _split(50, (0.6, 0.4), np.random.default_rng(3))
    c = _split(50, (0.6, 0.4), np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert a[0].tolist() != list(range(30))  # not the identity order


def test_split_fractions_of_fit_classifier_sum_to_one():
    """The three-way negative split fit_classifier uses leaves no prompt out."""
    test_fraction, cal_fraction = 0.25, 0.3
    neg_test = test_fraction * (1 - cal_fraction)
    parts = _split(333, (1 - cal_fraction - neg_test, cal_fraction, neg_test), np.random.default_rng(0))
    assert sum(len(p) for p in parts) == 333
    assert len(parts[1]) >= int(0.3 * 333) - 1
