"""fit_classifier: split the prompts, train the classifier, calibrate its threshold, measure it held out.

Forget prompts are split into train and test; negatives (retain and general prompts) into train,
calibration and test, so that no prompt that measures the classifier was used to fit or calibrate it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..classifier import (
    AnyOfClassifier,
    EncoderClassifier,
    KeywordClassifier,
    PromptClassifier,
    error_rates,
)
from ..classifier.calibration import CalibrationError, conformal_rank, min_calibration_size
from ..classifier.text import as_phrases
from ..data.items import ItemsError, PromptItem, find_overlap, general_prompts, normalize_prompt, read_items
from .config import FitConfig
from .deprecated import CLASSIFIER_KEYWORDS, apply_keywords
from .entity_negatives import calibrate, split_entity_negatives
from .report import Calibration, HeldOutRates, Splits

__all__ = ["ClassifierFit", "ItemSource", "Progress", "default_classifier", "fit_classifier", "read_optional"]

Progress = Callable[[str, int, int], None]
ItemSource = Any  # a path, or an iterable of PromptItem / str / dict

def _dedupe(items: Sequence[PromptItem]) -> list[PromptItem]:
    seen, out = set(), []
    for item in items:
        key = normalize_prompt(item.prompt)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _split(n: int, fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    cuts = np.floor(np.cumsum(fractions)[:-1] * n).astype(int)
    return np.split(order, cuts)


def default_classifier(entities: Sequence[str] = (), **options: Any) -> PromptClassifier:
    """An unfitted ``EncoderClassifier(**options)``, next to exact matches of ``entities`` if any."""
    classifier = EncoderClassifier(**options)
    return AnyOfClassifier([KeywordClassifier(entities), classifier]) if entities else classifier


@dataclass
class ClassifierFit:
    """A fitted classifier with its calibrated threshold and what was measured on held-out prompts."""

    classifier: PromptClassifier
    threshold: float
    calibration: Calibration
    held_out: HeldOutRates
    splits: Splits
    positives: list[PromptItem]
    entities: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def fit_classifier(
    forget: ItemSource,
    retain: ItemSource = (),
    config: FitConfig | None = None,
    *,
    general: ItemSource | None = "builtin",
    entities: str | Sequence[str] = (),
    classifier: PromptClassifier | None = None,
    progress: Progress | None = None,
    **deprecated: Any,
) -> ClassifierFit:
    """The classifier half of ``fit_guard``: split, train, calibrate at ``config.calibration.alpha``,
    measure held-out rates. Of ``config`` it reads ``classifier``, ``calibration`` and ``seed``.

    Forget prompts are split into train and test; negatives (retain and general) into train,
    calibration and test, so no prompt that measures the classifier was used to fit or calibrate it.
    The old keywords ``alpha``, ``test_fraction`` and ``seed`` still work, with a DeprecationWarning.
    """
    config, _ = apply_keywords(config or FitConfig(), deprecated, "fit_classifier", CLASSIFIER_KEYWORDS)
    alpha, test_fraction, seed = config.calibration.alpha, config.classifier.test_fraction, config.seed
    note = progress or (lambda what, done, total: None)
    forget_items = read_items(forget, name="forget set")
    retain_items = read_optional(retain, "retain set")
    general_items = general_prompts() if general == "builtin" else read_optional(general, "general set")
    overlap = find_overlap(forget_items, retain_items)
    if overlap:
        shown = "\n  ".join(f"{a.source or '?'} = {b.source or '?'}: {a.prompt!r}" for a, b in overlap[:20])
        raise ItemsError(f"{len(overlap)} prompt(s) are in both the forget and the retain set:\n  {shown}")
    forget_keys = {normalize_prompt(i.prompt) for i in forget_items}
    general_items = [i for i in general_items if normalize_prompt(i.prompt) not in forget_keys]
    entities = tuple(e for e in as_phrases(entities) if e.strip())
    positives, negatives, notes = split_entity_negatives(
        _dedupe(forget_items), _dedupe(retain_items + general_items), entities, config.calibration.entity_negatives
    )
    if len(positives) < 2:
        raise ItemsError("the forget set needs at least 2 distinct prompts (one to train on, one to test with)")
    rng = np.random.default_rng(seed)
    pos_train, pos_test = _split(len(positives), (1 - test_fraction, test_fraction), rng)
    needed = min_calibration_size(alpha)
    cal_fraction = max(0.25, needed / max(len(negatives), 1))
    if len(negatives) < needed * 2 or cal_fraction > 0.4:
        raise CalibrationError(
            f"calibrating at alpha={alpha:g} needs at least {needed} held-out negatives, about {math.ceil(needed / 0.25)} "
            f"retain and general prompts in all; there are {len(negatives)}. Add retain or general prompts, or raise alpha"
        )
    neg_test_fraction = test_fraction * (1 - cal_fraction)
    neg_train, neg_cal, neg_test = _split(len(negatives), (1 - cal_fraction - neg_test_fraction, cal_fraction, neg_test_fraction), rng)
    texts = lambda items, idx: [items[i].prompt for i in idx]  # noqa: E731
    retain_keys = {normalize_prompt(i.prompt) for i in retain_items}
    is_retain = np.array([normalize_prompt(i.prompt) in retain_keys for i in negatives], dtype=bool)
    splits = Splits(
        forget_train=len(pos_train), forget_test=len(pos_test), negative_train=len(neg_train),
        negative_calibration=len(neg_cal), negative_test=len(neg_test), retain=len(retain_items), general=len(general_items),
    )
    classifier = classifier or default_classifier(
        entities, backbone=config.classifier.backbone, mode=config.classifier.mode, seed=seed
    )
    note("training the classifier", 0, 3)
    if hasattr(classifier, "fit"):  # a keyword or constant classifier has nothing to learn
        classifier.fit(
            texts(positives, pos_train),
            texts(negatives, neg_train[is_retain[neg_train]]),
            extra_negatives=texts(negatives, neg_train[~is_retain[neg_train]]),
        )
    note("calibrating the threshold", 1, 3)
    cal_texts = texts(negatives, neg_cal)
    threshold, calibration_notes = calibrate(
        classifier.predict_proba(cal_texts), cal_texts, alpha, entities, config.calibration.entity_negatives
    )
    notes += calibration_notes
    note("measuring held-out error rates", 2, 3)
    test_pos, test_neg = texts(positives, pos_test), texts(negatives, neg_test)
    neg_scores = classifier.predict_proba(test_neg)
    rates = error_rates(
        classifier.predict_proba(test_pos), neg_scores, threshold, positive_texts=test_pos, negative_texts=test_neg
    )
    retain_scores = neg_scores[is_retain[neg_test]]
    held_out = HeldOutRates(
        **asdict(rates),
        fpr_retain=float(np.mean(retain_scores >= threshold)) if retain_scores.size else None,
        retain_negatives=int(retain_scores.size),
    )
    calibration = Calibration(alpha, threshold, len(neg_cal), conformal_rank(len(neg_cal), alpha), held_out)
    note("classifier ready", 3, 3)
    return ClassifierFit(classifier, threshold, calibration, held_out, splits, positives, entities, notes)


def read_optional(source: ItemSource, name: str) -> list[PromptItem]:
    if source is None or (isinstance(source, (list, tuple)) and not source):
        return []
    return read_items(source, name=name)
