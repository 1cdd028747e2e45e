"""Text normalisation before classification, so that character tricks do not change what is classified:
Unicode NFKC, zero-width and other invisible characters removed, look-alike letters of other scripts
folded to Latin, digits inside words folded back from leetspeak, letter-by-letter spacing joined, runs of blanks made one.
``NormalizingClassifier`` wraps any classifier with it, at training and at prediction alike."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from .base import PromptClassifier, build_classifier, register_classifier

__all__ = ["NormalizingClassifier", "normalize_text"]

INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200c\u200d\u200e\u200f"
                                   "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\ufeff"))
# Cyrillic and Greek letters that look like Latin ones (a subset of Unicode's confusables list).
CONFUSABLES = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеѕіјорсхуԁһӏɡΑΒΕΖΗΙΚΜΝΟΡΤΥΧοερτυνι",
    "ABESIJKMHOPCTXYaesijopcxydhlgABEZHIKMNOPTYXoeptuvi",
)
LEET = str.maketrans("4310578@$", "aeiostbas")
_LEET_WORD = re.compile(r"\b(?=\w*[a-zA-Z])(?=\w*[0-9@$])[\w@$]+\b")
_SPACED = re.compile(r"(?<!\w)(?:\w ){2,}\w(?!\w)")
_BLANKS = re.compile(r"[ \t]{2,}")


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    if re.fullmatch(r"\d+(st|nd|rd|th|s|m|k|km|kg|cm|mm|pm|am)", word, flags=re.IGNORECASE):
        return word  # ordinals, decades, units: not leetspeak
    return word.translate(LEET)


def normalize_text(text: str) -> str:
    """``text`` as the classifier should see it (see the module docstring); idempotent."""
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE).translate(CONFUSABLES)
    text = _LEET_WORD.sub(_unleet, text)
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    return _BLANKS.sub(" ", text)


@register_classifier
class NormalizingClassifier:
    """``inner`` applied to ``normalize_text`` of every text, in training and prediction."""

    kind: ClassVar[str] = "normalizing"

    def __init__(self, inner: PromptClassifier) -> None:
        self.inner = inner

    def fit(self, forget_texts: Sequence[str], retain_texts: Sequence[str], *, extra_negatives: Sequence[str] = (),
            **kwargs: Any) -> "NormalizingClassifier":
        if hasattr(self.inner, "fit"):
            self.inner.fit([normalize_text(t) for t in forget_texts], [normalize_text(t) for t in retain_texts],
                           extra_negatives=[normalize_text(t) for t in extra_negatives], **kwargs)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.predict_proba([normalize_text(t) for t in texts])

    def to_config(self) -> dict[str, Any]:
        return {"inner": {"kind": self.inner.kind, "config": self.inner.to_config()}}

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.inner.tensors()

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "NormalizingClassifier":
        return cls(build_classifier(config["inner"]["kind"], config["inner"].get("config", {}), tensors))

    def __repr__(self) -> str:
        return f"NormalizingClassifier({self.inner!r})"
