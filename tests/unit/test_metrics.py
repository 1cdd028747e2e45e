"""Tests of eco_unlearn.metrics: pure functions of log-probabilities and strings, checked against hand
computations and against scipy / rouge-score used directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from eco_unlearn.metrics import (
    answer_probability,
    contains_answer,
    forget_quality,
    harmonic_mean,
    mean_nll,
    normalize_answer,
    rouge_l_recall,
    truth_ratio,
)

# ----------------------------------------------------------------------------------- probabilities


def test_mean_nll_is_minus_mean_logprob():
    assert mean_nll([-1.0, -2.0, -6.0]) == pytest.approx(3.0)
    assert mean_nll([0.0]) == 0.0


def test_answer_probability_is_exp_of_mean_logprob():
    """Length-normalised: the geometric mean of token probabilities, not their product."""
    logprobs = [math.log(0.5), math.log(0.125)]
    assert answer_probability(logprobs) == pytest.approx(0.25)  # sqrt(0.5 * 0.125)
    assert answer_probability([-0.5, -1.5]) == pytest.approx(math.exp(-1.0))
    # a longer answer with the same per-token probability has the same answer probability
    assert answer_probability([math.log(0.3)] * 7) == pytest.approx(0.3)


def test_answer_probability_accepts_tensors_and_arrays():
    import torch

    assert answer_probability(torch.tensor([-1.0, -3.0]).tolist()) == pytest.approx(math.exp(-2.0))
    assert answer_probability(np.array([-1.0, -3.0])) == pytest.approx(math.exp(-2.0))


@pytest.mark.parametrize("fn", [mean_nll, answer_probability])
def test_empty_answer_is_an_error(fn):
    with pytest.raises(ValueError, match="at least one token"):
        fn([])


# ------------------------------------------------------------------------------------ truth ratio


def test_truth_ratio_matches_hand_computation():
    """exp(NLL(paraphrased) - mean over perturbed of NLL(perturbed)) = P(perturbed) / P(paraphrased)."""
    paraphrased = [-1.0, -2.0]  # mean NLL 1.5
    perturbed = [[-3.0], [-1.0, -1.0, -4.0]]  # mean NLLs 3.0 and 2.0, averaged in log space: 2.5
    assert truth_ratio(paraphrased, perturbed) == pytest.approx(math.exp(1.5 - 2.5))


def test_truth_ratio_averages_perturbed_in_log_space_not_probability_space():
    paraphrased = [-1.0]
    perturbed = [[-0.1], [-5.0]]
    log_space = math.exp(1.0 - (0.1 + 5.0) / 2)
    prob_space = ((math.exp(-0.1) + math.exp(-5.0)) / 2) / math.exp(-1.0)
    assert truth_ratio(paraphrased, perturbed) == pytest.approx(log_space)
    assert truth_ratio(paraphrased, perturbed) != pytest.approx(prob_space)


def test_truth_ratio_is_one_when_all_answers_have_the_same_per_token_logprobs():
    """Length-normalised: answers of different lengths with equal per-token log-probabilities tie."""
    lp = -0.7
    ratio = truth_ratio([lp] * 4, [[lp] * 2, [lp] * 9, [lp]])
    assert ratio == pytest.approx(1.0)


def test_truth_ratio_below_one_when_the_true_answer_is_more_likely():
    assert truth_ratio([-0.1, -0.1], [[-2.0, -2.0], [-3.0]]) < 0.2
    assert truth_ratio([-3.0], [[-0.1]]) > 5.0


def test_truth_ratio_errors():
    with pytest.raises(ValueError, match="perturbed"):
        truth_ratio([-1.0], [])
    with pytest.raises(ValueError):
        truth_ratio([], [[-1.0]])
    with pytest.raises(ValueError):
        truth_ratio([-1.0], [[-1.0], []])


# --------------------------------------------------------------------------------- forget quality


def test_forget_quality_is_the_ks_test_p_value():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 40), rng.normal(0.3, 1.2, 55)
    assert forget_quality(a, b) == pytest.approx(stats.ks_2samp(a, b).pvalue)
    assert forget_quality(a.tolist(), b.tolist()) == pytest.approx(stats.ks_2samp(a, b).pvalue)
    assert isinstance(forget_quality(a, b), float)


def test_forget_quality_is_one_for_identical_samples():
    values = [0.1, 0.5, 0.7, 0.9, 1.3]
    assert forget_quality(values, list(values)) == pytest.approx(1.0)


def test_forget_quality_is_tiny_for_clearly_different_samples():
    low = np.linspace(0.0, 0.1, 30)
    high = np.linspace(0.9, 1.0, 30)
    assert forget_quality(low, high) < 1e-10


def test_forget_quality_needs_both_samples():
    with pytest.raises(ValueError):
        forget_quality([], [0.5])
    with pytest.raises(ValueError):
        forget_quality([0.5], [])
    with pytest.raises(ValueError):
        forget_quality(np.array([]), np.array([0.5]))


# --------------------------------------------------------------------------------- harmonic mean


@pytest.mark.parametrize("values", [[1.0, 2.0, 4.0], [0.3], [0.2, 0.9, 0.5, 0.75], np.array([3.0, 3.0])])
def test_harmonic_mean_matches_scipy(values):
    assert harmonic_mean(values) == pytest.approx(float(stats.hmean(values)))


def test_harmonic_mean_by_hand():
    assert harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))


def test_harmonic_mean_is_zero_with_a_zero():
    assert harmonic_mean([0.9, 0.0, 0.8]) == 0.0


@pytest.mark.parametrize("values", [[], [0.5, -0.1], [-1.0]])
def test_harmonic_mean_rejects_empty_and_negative(values):
    with pytest.raises(ValueError):
        harmonic_mean(values)


# ------------------------------------------------------------------------------------------ ROUGE


def test_rouge_l_recall_extremes():
    assert rouge_l_recall("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l_recall("Paris France", "Berlin Germany") == 0.0


def test_rouge_l_recall_partial_is_lcs_over_reference_length():
    # LCS "the cat sat" = 3 of the reference's 6 tokens
    assert rouge_l_recall("the cat sat on the mat", "the cat sat") == pytest.approx(0.5)
    # order matters: only one of "paris"/"capital" can be in a common subsequence
    assert rouge_l_recall("Paris is the capital", "capital Paris") == pytest.approx(0.25)


def test_rouge_l_recall_is_recall_of_the_reference():
    """The first argument is the reference: extra generated words do not lower recall."""
    assert rouge_l_recall("cat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l_recall("the cat sat on the mat", "cat") == pytest.approx(1 / 6)


def test_rouge_l_recall_ignores_case_and_punctuation_and_stems():
    assert rouge_l_recall("J.K. Rowling", "j k rowling!") == pytest.approx(1.0)
    assert rouge_l_recall("he runs", "he running") == pytest.approx(1.0)  # Porter stemming


# ------------------------------------------------------------------------------ answer matching


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The  Quick, Brown fox!", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("J.K. Rowling", "j k rowling"),
        ("“Quoted” ‘text’", "quoted text"),
        ("Anna and Theodore", "anna and theodore"),  # articles only as whole words
        ("  \n\t ", ""),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "reference,generation",
    [
        ("J.K. Rowling", "It was J. K. Rowling."),
        ("J.K. Rowling", "j.k. rowling wrote it"),
        ("Hogwarts", "He went to HOGWARTS, a school."),
        ("The Hobbit", "I read a hobbit yesterday"),
        ("Ron", "Ron."),
        ("Ron", "Harry, Ron and Hermione"),
        ("42", "The answer is 42"),
        ("Harry", "Harry's wand"),
    ],
)
def test_contains_answer_found(reference, generation):
    assert contains_answer(reference, generation) is True


@pytest.mark.parametrize(
    "reference,generation",
    [
        ("Ron", "Ronald went home"),  # whole words only
        ("Ron", "Byron"),
        ("cat", "concatenate"),
        ("42", "421 apples"),
        ("J.K. Rowling", "Rowling"),
        ("Paris", "It is in France"),
        ("Harry Potter", "Potter Harry"),
    ],
)
def test_contains_answer_not_found(reference, generation):
    assert contains_answer(reference, generation) is False


@pytest.mark.parametrize("reference", ["", "   ", "...", "the", "a an the"])
def test_contains_answer_with_nothing_to_find_is_false(reference):
    """A reference that normalises to nothing must not count as found in every generation."""
    assert contains_answer(reference, "the quick brown fox") is False
    assert contains_answer(reference, "") is False


def test_contains_answer_empty_generation():
    assert contains_answer("Paris", "") is False
