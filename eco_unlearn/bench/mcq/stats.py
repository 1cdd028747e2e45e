"""Accuracy with a binomial confidence interval, and the classifier's error rates on a group."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from scipy.stats import binomtest

__all__ = ["Accuracy", "FlagRates", "accuracy", "independent_guess_accuracy"]


@dataclass(frozen=True)
class Accuracy:
    """``correct`` of ``n`` with a Wilson score interval at ``confidence`` (scipy's ``binomtest``)."""

    correct: int
    n: int
    value: float
    low: float
    high: float
    confidence: float = 0.95

    def points(self) -> str:
        """``41.2 [37.0, 45.5]``: the accuracy and its interval in percentage points."""
        return f"{100 * self.value:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def accuracy(correct: Sequence[bool], confidence: float = 0.95) -> Accuracy:
    """The share of ``correct`` answers with its Wilson interval; NaN for no questions."""
    n, k = len(correct), int(sum(bool(c) for c in correct))
    if n == 0:
        nan = float("nan")
        return Accuracy(0, 0, nan, nan, nan, confidence)
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Accuracy(k, n, k / n, float(interval.low), float(interval.high), confidence)


def independent_guess_accuracy(predictions: Sequence[int], answers: Sequence[int]) -> float:
    """The accuracy a model with the same answer-letter habits would get if its picks ignored the question:
    sum over letters of (share of predictions) x (share of answers). A model that answers "D" to everything
    scores the share of "D" answers, not chance; accuracy near this value means no knowledge shows, whatever
    its distance from 1/k. NaN for no questions."""
    if len(predictions) != len(answers):
        raise ValueError("one prediction per answer")
    if not predictions:
        return float("nan")
    picked, right = Counter(predictions), Counter(answers)
    return float(sum(picked[x] * right[x] for x in picked) / len(predictions) ** 2)


@dataclass(frozen=True)
class FlagRates:
    """How often the guard flagged a group's prompts: ``fnr`` is the unflagged share of a group that should
    be flagged (forget), ``fpr`` the flagged share of one that should not (related, other)."""

    flagged: int
    n: int
    should_flag: bool

    @property
    def rate(self) -> float:
        return self.flagged / self.n if self.n else float("nan")

    @property
    def fnr(self) -> float | None:
        return 1 - self.rate if self.should_flag else None

    @property
    def fpr(self) -> float | None:
        return None if self.should_flag else self.rate
