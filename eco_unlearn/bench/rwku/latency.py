"""Classifier time per prompt as the number of people grows. The encoder runs once per prompt whatever the
number of people (one shared backbone, one head); what grows is the name matching. So the curve is measured
in its two parts side by side: the encoder pass (batch of 32) and normalisation plus fuzzy matching of N names."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...classifier import EncoderClassifier, FuzzyNameClassifier, normalize_text
from ..environment import environment
from ..saving import SavedReport

__all__ = ["LatencyCurve", "latency_curve"]


@dataclass
class LatencyCurve(SavedReport):
    benchmark = "rwku-latency"
    people: list[int]
    encoder_ms_per_prompt: float
    matching_ms_per_prompt: list[float]
    total_ms_per_prompt: list[float]
    prompts: int
    batch_size: int
    environment: dict[str, Any] = field(default_factory=dict)


def _ms_per_prompt(fn, texts: Sequence[str], batch: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            fn(texts[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(texts)


def latency_curve(names: Sequence[str], texts: Sequence[str], counts: Sequence[int] = (1, 10, 100), *,
                  batch_size: int = 32, repeats: int = 3, backbone: str = "minilm") -> LatencyCurve:
    """ms per prompt of the encoder (a linear head fitted on a few of ``texts``) and of normalising and
    matching the first N ``names``, for each N in ``counts``; the minimum over ``repeats``."""
    encoder = EncoderClassifier(backbone, C=1.0).fit([f"Who is {n}?" for n in names[:8]], list(texts[:8]))
    encoder_ms = _ms_per_prompt(encoder.predict_proba, texts, batch_size, repeats)
    matching = []
    for n in counts:
        fuzzy = FuzzyNameClassifier(list(names[:n]))
        matching.append(_ms_per_prompt(lambda b: fuzzy.predict_proba([normalize_text(t) for t in b]), texts, batch_size, repeats))
    return LatencyCurve(list(counts), encoder_ms, matching, [encoder_ms + m for m in matching], len(texts), batch_size,
                        environment())
