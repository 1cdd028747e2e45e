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
