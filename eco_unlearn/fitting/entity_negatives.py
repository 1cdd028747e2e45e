"""Negatives that name an entity of the forget scope: the exact-name matcher scores them the maximum, so
the threshold cannot sit above them. Instead of a generic refusal, say which negatives and which entity,
and do what the user chose (``CalibrationConfig.entity_negatives``)."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..classifier import conformal_threshold
from ..classifier.text import phrase_regex
from ..data.items import PromptItem
from ..errors import CalibrationError

__all__ = ["calibrate", "entity_matches", "split_entity_negatives"]

CHOICES = (
    "choose one: leave them out (--entity-negatives drop, CalibrationConfig(entity_negatives='drop')), treat them "
    "as in scope (--entity-negatives forget), or keep them and accept the false-positive rate they cause "
    "(--entity-negatives accept)"
)


def entity_matches(texts: Sequence[str], entities: Sequence[str]) -> list[str | None]:
    """For each text, the first entity it names (whole words, case-insensitive), or None."""
    regexes = [(e, re.compile(phrase_regex(e), re.IGNORECASE)) for e in entities if e.strip()]
    return [next((e for e, r in regexes if r.search(t)), None) for t in texts]


def split_entity_negatives(
    positives: list[PromptItem], negatives: list[PromptItem], entities: Sequence[str], mode: str
) -> tuple[list[PromptItem], list[PromptItem], list[str]]:
    """``drop``: negatives naming an entity are left out; ``forget``: they become positives; otherwise
    unchanged. Returns positives, negatives and a note of what was done."""
    if mode not in ("drop", "forget") or not entities:
        return positives, negatives, []
    hits = entity_matches([n.prompt for n in negatives], entities)
    named = [n for n, hit in zip(negatives, hits) if hit is not None]
    if not named:
        return positives, negatives, []
    kept = [n for n, hit in zip(negatives, hits) if hit is None]
    what = "left out" if mode == "drop" else "treated as forget prompts"
    note = f"{len(named)} negative(s) naming an entity were {what}: " + "; ".join(repr(n.prompt[:80]) for n in named[:5])
    return (positives + named if mode == "forget" else positives), kept, [note]


def calibrate(scores: np.ndarray, texts: Sequence[str], alpha: float, entities: Sequence[str], mode: str) -> tuple[float, list[str]]:
    """The conformal threshold; when negatives at the maximum score make it unreachable, ``accept`` flags
    at the maximum (with a note) and anything else raises a ``CalibrationError`` naming those negatives
    and the entity each names."""
    try:
        return conformal_threshold(scores, alpha), []
    except CalibrationError as exc:
        top = [i for i in np.argsort(-scores) if scores[i] >= 1.0]
        if not top:
            raise
        if mode == "accept":
            return 1.0, [f"{len(top)} of {len(scores)} calibration negatives score the maximum; the threshold is the "
                         "maximum score, and the held-out FPR below is what they cost"]
        hits = entity_matches([texts[i] for i in top], entities)
        shown = "\n  ".join(
            f"{texts[i][:100]!r}: " + (f"names {hit!r}" if hit else "names no entity (the learned classifier scores it 1.0)")
            for i, hit in list(zip(top, hits))[:10]
        )
        raise CalibrationError(
            f"{len(top)} held-out negative(s) of {len(scores)} reach the maximum score 1.0, above the {1 - alpha:.1%} "
            f"quantile, so no threshold keeps the false-positive rate at {alpha:g}:\n  {shown}\n"
            + (CHOICES if any(hits) else "give more or better training data") + " (or raise alpha)"
        ) from exc
