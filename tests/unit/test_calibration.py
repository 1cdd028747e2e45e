"""Tests of eco_unlearn.classifier.calibration: split-conformal thresholds and held-out error rates."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from eco_unlearn.classifier.calibration import (
    CalibrationError,
    ErrorRates,
    conformal_threshold,
    error_rates,
    min_calibration_size,
)
from eco_unlearn.errors import EcoUnlearnError


def exact_min_size(alpha: str) -> int:
    """Smallest n with ceil((n + 1)(1 - alpha)) <= n, in exact rational arithmetic."""
    a = Fraction(alpha)
    n = 1
    while math.ceil((n + 1) * (1 - a)) > n:
        n += 1
    return n


def exact_rank(n: int, alpha: str) -> int:
    return math.ceil((n + 1) * (1 - Fraction(alpha)))


def test_calibration_error_is_an_eco_unlearn_error():
    assert issubclass(CalibrationError, EcoUnlearnError)


@pytest.mark.parametrize("alpha,expected", [(0.01, 99), (0.05, 19), (0.1, 9), (0.2, 4), (0.5, 1)])
def test_min_calibration_size_known_values(alpha, expected):
    assert min_calibration_size(alpha) == expected


@pytest.mark.parametrize("alpha", ["0.001", "0.01", "0.02", "0.03", "0.05", "0.07", "0.1", "0.15", "0.2", "0.25", "0.3", "0.33", "0.5", "0.9", "0.99"])
def test_min_calibration_size_matches_exact_arithmetic(alpha):
    assert min_calibration_size(float(alpha)) == exact_min_size(alpha)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan")])
def test_min_calibration_size_rejects_bad_alpha(alpha):
    with pytest.raises(CalibrationError, match="alpha"):
        min_calibration_size(alpha)


def test_too_few_negatives_names_the_needed_count():
    scores = np.linspace(0, 0.5, 98)
    with pytest.raises(CalibrationError) as info:
        conformal_threshold(scores, 0.01)
    message = str(info.value)
    assert "99" in message and "98" in message
    # one more negative is enough
    assert 0 < conformal_threshold(np.linspace(0, 0.5, 99), 0.01) <= 1


def test_no_negatives_at_all():
    with pytest.raises(CalibrationError, match="19"):
        conformal_threshold([], 0.05)


@pytest.mark.parametrize("n,alpha", [(99, "0.01"), (100, "0.01"), (250, "0.01"), (19, "0.05"), (250, "0.05"), (9, "0.1"), (99, "0.1"), (1000, "0.1"), (37, "0.2")])
def test_threshold_is_just_above_exactly_the_conformal_rank(n, alpha):
    """Distinct scores: exactly k = ceil((n+1)(1-alpha)) of them lie below the threshold; the k-th
    smallest is the largest one below it, and nothing representable lies between them."""
    rng = np.random.default_rng(n)
    scores = rng.uniform(0, 1, n)
    threshold = conformal_threshold(scores, float(alpha))
    k = exact_rank(n, alpha)
    assert int((scores < threshold).sum()) == k
    assert int((scores >= threshold).sum()) == n - k
    kth = np.sort(scores)[k - 1]
    assert threshold == np.nextafter(kth, np.inf)


def test_threshold_does_not_depend_on_input_order():
    scores = np.random.default_rng(1).uniform(0, 1, 120)
    assert conformal_threshold(scores, 0.05) == conformal_threshold(scores[::-1].copy(), 0.05)
    assert conformal_threshold(scores.tolist(), 0.05) == conformal_threshold(scores, 0.05)


def test_tied_scores_are_never_flagged_below_the_quantile():
    """With 0/1 scores (a keyword classifier), every negative scoring the quantile value stays unflagged."""
    scores = np.array([0.0] * 95 + [1.0] * 4)
    threshold = conformal_threshold(scores, 0.05)
    assert 0.0 < threshold <= 1.0
    assert int((scores >= threshold).sum()) == 4


@pytest.mark.parametrize("n,alpha", [(99, 0.1), (19, 0.05), (200, 0.05)])
def test_conformal_coverage_monte_carlo(n, alpha):
    """For exchangeable negatives the chance that a fresh one is flagged is at most alpha, and with
    continuous scores it equals (n + 1 - k) / (n + 1): close to alpha, not far below."""
    rng = np.random.default_rng(12345)
    reps, fresh = 2000, 100
    calibration = rng.uniform(0, 1, (reps, n))
    new = rng.uniform(0, 1, (reps, fresh))
    fprs = np.empty(reps)
    for r in range(reps):
        threshold = conformal_threshold(calibration[r], alpha)
        fprs[r] = np.mean(new[r] >= threshold)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    exact = (n + 1 - k) / (n + 1)
    assert exact <= alpha + 1e-12
    # standard error of the mean over 2000 repetitions is below 0.001 for these settings
    assert fprs.mean() <= alpha + 0.004
    assert fprs.mean() == pytest.approx(exact, abs=0.004)
    assert fprs.mean() >= alpha - 0.02


def test_negatives_reaching_the_maximum_score_are_refused():
    scores = np.array([0.1] * 79 + [1.0] * 20)
    with pytest.raises(CalibrationError, match="1.0"):
        conformal_threshold(scores, 0.1)
    # with only the top 9 of 99 at 1.0, the 90th smallest is below 1: a valid threshold
    ok = np.array([0.1] * 90 + [1.0] * 9)
    threshold = conformal_threshold(ok, 0.1)
    assert 0.1 < threshold <= 1.0
    assert int((ok >= threshold).sum()) == 9


# ----------------------------------------------------------------------------------- error rates


def test_error_rates_counts_and_examples_most_confident_mistake_first():
    pos = [0.9, 0.2, 0.4, 0.6, 0.05]
    neg = [0.1, 0.7, 0.95, 0.3, 0.5]
    rates = error_rates(
        pos, neg, 0.5,
        positive_texts=["p0", "p1", "p2", "p3", "p4"],
        negative_texts=["n0", "n1", "n2", "n3", "n4"],
    )
    assert isinstance(rates, ErrorRates)
    assert (rates.false_negatives, rates.positives) == (3, 5)
    assert (rates.false_positives, rates.negatives) == (3, 5)  # 0.5 >= 0.5 is flagged
    assert rates.fnr == pytest.approx(3 / 5)
    assert rates.fpr == pytest.approx(3 / 5)
    assert rates.missed == ["p4", "p1", "p2"]  # lowest-scoring positives first
    assert rates.wrongly_flagged == ["n2", "n1", "n4"]  # highest-scoring negatives first


def test_error_rates_examples_are_capped():
    rates = error_rates([0.1, 0.2, 0.3], [0.9, 0.8, 0.7], 0.5, positive_texts=["a", "b", "c"], negative_texts=["x", "y", "z"], examples=2)
    assert rates.missed == ["a", "b"]
    assert rates.wrongly_flagged == ["x", "y"]
    assert (rates.false_negatives, rates.false_positives) == (3, 3)


def test_error_rates_without_texts_and_without_errors():
    rates = error_rates(np.array([0.8, 0.9]), np.array([0.1, 0.2, 0.3]), 0.5)
    assert (rates.fpr, rates.fnr) == (0.0, 0.0)
    assert rates.missed == [] and rates.wrongly_flagged == []


def test_error_rates_empty_sides_are_nan_and_serialisable():
    rates = error_rates([], [0.7, 0.2], 0.5)
    assert math.isnan(rates.fnr)
    assert rates.fpr == pytest.approx(0.5)
    data = rates.to_dict()
    assert data["false_positives"] == 1 and data["negatives"] == 2 and data["positives"] == 0
    assert data["fpr"] == pytest.approx(0.5) and math.isnan(data["fnr"])
    json.dumps(data)
