"""Split-conformal threshold calibration and held-out error rates.

Given the scores of n held-out negatives (prompts outside the forget scope, never used in training), the
threshold is set just above the ceil((n + 1)(1 - alpha))-th smallest score. For a new negative
exchangeable with them, the chance of being flagged is then at most alpha (the finite-sample guarantee
of split conformal prediction); it needs n >= (1 - alpha) / alpha negatives, 99 for alpha = 0.01.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import CalibrationError
from ..validation import number

__all__ = [
    "CalibrationError",
    "ErrorRates",
    "conformal_rank",
    "conformal_threshold",
    "error_rates",
    "min_calibration_size",
]



def conformal_rank(n: int, alpha: float) -> int:
    """Rank (1-based, ascending) of the calibration score the threshold sits just above."""
    return math.ceil((n + 1) * (1 - alpha) - 1e-9)  # tolerance: (n + 1) * 0.99 must not round up past n


def min_calibration_size(alpha: float) -> int:
    """Fewest held-out negatives for which the conformal threshold bounds the FPR at ``alpha``."""
    number(alpha, "alpha", low=0, high=1, low_open=True, high_open=True, error=CalibrationError)
    n = max(1, math.floor((1 - alpha) / alpha) - 1)
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def conformal_threshold(negative_scores: Sequence[float], alpha: float) -> float:
    """The smallest threshold (flag when ``score >= threshold``) whose conformal FPR bound is ``alpha``."""
    needed = min_calibration_size(alpha)
    scores = np.sort(np.asarray(negative_scores, dtype=np.float64))
    n = scores.size
    if n < needed:
        raise CalibrationError(
            f"calibrating at alpha={alpha:g} needs at least {needed} held-out negative prompts; only {n} are "
            f"available. Give more retain or general prompts (about {math.ceil(needed / max(n, 1) * 100)}% of "
            "what you have now), or raise alpha"
        )
    quantile = float(scores[conformal_rank(n, alpha) - 1])
    threshold = float(np.nextafter(quantile, np.inf))
    if threshold > 1.0:
        raise CalibrationError(
            f"held-out negatives reach the maximum score 1.0 at the {1 - alpha:.1%} quantile: the classifier does "
            "not separate the forget scope from other prompts; give more or better training data"
        )
    return threshold


@dataclass
class ErrorRates:
    """False-positive and false-negative rates at a threshold, with their counts and worst examples."""

    threshold: float
    false_positives: int
    negatives: int
    false_negatives: int
    positives: int
    missed: list[str] = field(default_factory=list)
    wrongly_flagged: list[str] = field(default_factory=list)

    @property
    def fpr(self) -> float:
        return self.false_positives / self.negatives if self.negatives else math.nan

    @property
    def fnr(self) -> float:
        return self.false_negatives / self.positives if self.positives else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"fpr": self.fpr, "fnr": self.fnr, **asdict(self)}


def error_rates(
    positive_scores: Sequence[float],
    negative_scores: Sequence[float],
    threshold: float,
    *,
    positive_texts: Sequence[str] = (),
    negative_texts: Sequence[str] = (),
    examples: int = 5,
) -> ErrorRates:
    """Count errors at ``threshold`` (flag when ``score >= threshold``); keep a few misclassified texts,
    the most confident mistakes first."""
    pos, neg = np.asarray(positive_scores, dtype=np.float64), np.asarray(negative_scores, dtype=np.float64)
    missed = [i for i in np.argsort(pos) if pos[i] < threshold]
    flagged = [i for i in np.argsort(-neg) if neg[i] >= threshold]
    return ErrorRates(
        threshold=threshold,
        false_positives=len(flagged),
        negatives=int(neg.size),
        false_negatives=len(missed),
        positives=int(pos.size),
        missed=[positive_texts[i] for i in missed[:examples]] if len(positive_texts) else [],
        wrongly_flagged=[negative_texts[i] for i in flagged[:examples]] if len(negative_texts) else [],
    )
