"""Unlearning metrics as pure functions of numbers and strings, following their published definitions.

Probabilities come from per-token log-probabilities (``GuardedModel.score``); nothing here runs a model.
The TOFU definitions follow the open-unlearning framework: length-normalised answer probability,
ROUGE-L recall, truth ratio in log space, forget quality as a KS-test p-value, model utility as a
harmonic mean.
"""

from __future__ import annotations

import math
import re
import string
from functools import lru_cache
from typing import Sequence

import numpy as np

from .errors import MetricError

__all__ = [
    "answer_probability",
    "contains_answer",
    "forget_quality",
    "forget_quality_bound",
    "harmonic_mean",
    "mean_nll",
    "normalize_answer",
    "rouge_l_recall",
    "truth_ratio",
]

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}‘’“”]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def mean_nll(logprobs: Sequence[float]) -> float:
    """Average negative log-likelihood per token of one answer (TOFU's ``avg_loss``)."""
    values = np.asarray(logprobs, dtype=np.float64)
    if values.size == 0:
        raise MetricError("an answer needs at least one token to score")
    return float(-values.mean())


def answer_probability(logprobs: Sequence[float]) -> float:
    """Length-normalised probability of an answer: ``exp(mean token log-probability)``."""
    return math.exp(-mean_nll(logprobs))


def truth_ratio(paraphrased_logprobs: Sequence[float], perturbed_logprobs: Sequence[Sequence[float]]) -> float:
    """TOFU truth ratio of one question: P(perturbed) / P(paraphrased), with length-normalised
    probabilities and the perturbed answers averaged in log space (the mean of their mean NLLs).

    Near 1 the model cannot tell a true answer from false ones; well below 1 it knows the true one.
    """
    if not perturbed_logprobs:
        raise MetricError("the truth ratio needs at least one perturbed answer")
    wrong = float(np.mean([mean_nll(p) for p in perturbed_logprobs]))
    return math.exp(mean_nll(paraphrased_logprobs) - wrong)


def forget_quality(truth_ratios: Sequence[float], retain_truth_ratios: Sequence[float]) -> float:
    """TOFU forget quality: the two-sample Kolmogorov-Smirnov p-value between a model's forget-set truth
    ratios and those of a model never trained on the forget set. High means indistinguishable."""
    if len(truth_ratios) == 0 or len(retain_truth_ratios) == 0:
        raise MetricError("forget quality needs truth ratios from both models")
    from scipy import stats  # here, not at the top: scipy.stats alone takes a second to import

    return float(stats.ks_2samp(truth_ratios, retain_truth_ratios).pvalue)


def forget_quality_bound(truth_ratios: Sequence[float], total: int, retain_truth_ratios: Sequence[float]) -> float:
    """The highest forget quality that ``total`` truth ratios can reach when only the first ones are known.

    The other ``total - len(truth_ratios)`` values are placed where they bring the forget sample's empirical
    distribution closest to the retain sample's: the least KS distance reachable, found by bisection over
    the distances' lattice (multiples of ``1 / lcm(n, m)``) with the greedy placement of ``_least_placement``.
    The KS p-value falls as the distance grows (for fixed sample sizes), so no values the unknown items could
    take give a higher forget quality. A strength search can stop scoring a strength once this bound misses
    its target: the full evaluation would miss it too.
    """
    known = np.sort(np.asarray(truth_ratios, dtype=np.float64))
    reference = np.sort(np.asarray(retain_truth_ratios, dtype=np.float64))
    n, m, k = int(total), reference.size, known.size
    if k > n:
        raise MetricError(f"got {k} known truth ratios for a sample of {n}")
    if n == 0 or m == 0:
        raise MetricError("forget quality needs truth ratios from both models")
    if k == n:
        return forget_quality(known, reference)
    support = np.unique(np.concatenate([known, reference]))
    counts = np.searchsorted(known, support, side="right")  # known forget values at or below each point
    shares = np.searchsorted(reference, support, side="right") / m  # the reference's ECDF there
    lattice = math.lcm(n, m)
    lo, hi = 0, lattice  # a distance of 1 is always reachable
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _least_placement(counts, shares, n, n - k, mid / lattice) is not None else (mid + 1, hi)
    placed = _least_placement(counts, shares, n, n - k, lo / lattice)
    completion = np.repeat(support, np.diff(np.concatenate([[0], placed])))
    return forget_quality(np.concatenate([known, completion]), reference)


def _least_placement(counts: np.ndarray, shares: np.ndarray, n: int, unknown: int, distance: float) -> np.ndarray | None:
    """How many of the ``unknown`` values to place at or below each support point (nondecreasing, all of them
    by the last point) so that the forget ECDF, ``(counts + placed) / n``, stays within ``distance`` of the
    reference's ``shares`` at every point: the fewest at each point, or None if no placement does. Below the
    first point both ECDFs are 0 and nothing needs to go there."""
    low = np.maximum(np.ceil(n * (shares - distance) - counts - 1e-9), 0)
    high = np.minimum(np.floor(n * (shares + distance) - counts + 1e-9), unknown)
    low[-1] = max(low[-1], unknown)
    placed = np.maximum.accumulate(low)
    return placed.astype(np.int64) if (placed <= high).all() else None


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean (TOFU model utility over its nine numbers); 0 when any value is 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or (values < 0).any():
        raise MetricError("the harmonic mean needs at least one value, none negative")
    return 0.0 if (values == 0).any() else float(values.size / np.sum(1.0 / values))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, generation: str) -> float:
    """ROUGE-L recall of ``reference`` in ``generation`` (rouge-score, with stemming, as TOFU reports)."""
    return float(_rouge_scorer().score(reference, generation)["rougeL"].recall)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style normalisation)."""
    text = _ARTICLES.sub(" ", _PUNCTUATION.sub(" ", text.lower()))
    return " ".join(text.split())


def contains_answer(reference: str, generation: str) -> bool:
    """Whether the normalised reference occurs in the normalised generation on word boundaries."""
    ref = normalize_answer(reference)
    return bool(ref) and f" {ref} " in f" {normalize_answer(generation)} "
