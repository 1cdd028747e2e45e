"""Classifier time per prompt as the number of people grows, plain against hardened, in one run.

Plain: exact names (``KeywordClassifier``) next to the MiniLM encoder, one encoder pass per prompt whatever
the number of people. Hardened: normalisation, the name index and the lexical classifier
(``classifier.people``), whose cost does not grow with the number of names either. Both are fitted on a
few prompts per person (timing, not accuracy) and timed on the same held-out prompts in batches; the
ratio of the two is what survives a shared machine's load, which is recorded with the thread count."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...classifier import AnyOfClassifier, EncoderClassifier, KeywordClassifier, hardened_people_classifier
from ..environment import environment, load_average
from ..saving import SavedReport

__all__ = ["LatencyCurve", "latency_curve", "ms_per_prompt"]


@dataclass
class LatencyCurve(SavedReport):
    benchmark = "rwku-latency"
    people: list[int]
    plain_ms_per_prompt: list[float]
    hardened_ms_per_prompt: list[float]
    prompts: int
    batch_size: int
    threads: int
    load_average: list[float]
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> list[float]:
        return [p / h for p, h in zip(self.plain_ms_per_prompt, self.hardened_ms_per_prompt)]


def ms_per_prompt(fn: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch: int = 32,
                  repeats: int = 3) -> float:
    """Milliseconds per text of ``fn`` over ``texts`` in batches of ``batch``: the best of ``repeats`` passes."""
    texts = list(texts)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            fn(texts[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return 1000 * best / max(len(texts), 1)


def latency_curve(names: Sequence[str], texts: Sequence[str], counts: Sequence[int] = (1, 10, 100), *,
                  batch_size: int = 32, repeats: int = 3, backbone: str = "minilm") -> LatencyCurve:
    """ms per prompt of the plain and the hardened classifier for the first N ``names``, N in ``counts``,
    timed on ``texts`` (the first 200 are also the negatives they are fitted on)."""
    negatives = list(texts[:200])
    encoder = EncoderClassifier(backbone, C=1.0).fit([f"Who is {n}?" for n in names[:8]], negatives[:8])
    plain, hardened = [], []
    for n in counts:
        chosen = list(names[:n])
        questions = ("Who is {}?", "Where was {} born?", "Tell me about {}.")
        positives = [q.format(name) for name in chosen for q in questions]
        plain.append(ms_per_prompt(AnyOfClassifier([KeywordClassifier(chosen), encoder]).predict_proba, texts,
                                   batch_size, repeats))
        fast = hardened_people_classifier(chosen).fit(positives, [], extra_negatives=negatives)
        hardened.append(ms_per_prompt(fast.predict_proba, texts, batch_size, repeats))
    return LatencyCurve(list(counts), plain, hardened, len(texts), batch_size, torch.get_num_threads(),
                        load_average(), environment())
