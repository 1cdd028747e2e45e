"""A transparent classifier: keywords and regular expressions."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import GuardError
from .text import as_phrases, phrase_regex
from .base import register_classifier

__all__ = ["KeywordClassifier"]


@register_classifier
class KeywordClassifier:
    """Flags a text (probability 1.0) when any keyword or regular expression matches, case-insensitively.

    Plain keywords match on word boundaries ("Potter" does not match "potters"). Useful for exact
    scopes (names, product codes) and as a transparent baseline for learned classifiers.
    """

    kind: ClassVar[str] = "keyword"

    def __init__(self, keywords: str | Sequence[str] = (), *, patterns: str | Sequence[str] = ()) -> None:
        self.keywords = [k for k in (str(k).strip() for k in as_phrases(keywords)) if k]
        self.patterns = [p for p in as_phrases(patterns) if p]  # an empty regex would match every text
        if not self.keywords and not self.patterns:
            raise GuardError("a keyword classifier needs at least one keyword or pattern")
        regexes = [phrase_regex(k) for k in self.keywords]
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise GuardError(f"invalid regular expression {pattern!r}: {exc}") from None
            regexes.append(pattern)
        self._regex = re.compile("|".join(f"(?:{r})" for r in regexes), re.IGNORECASE)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([1.0 if self._regex.search(t) else 0.0 for t in texts], dtype=np.float64)

    def to_config(self) -> dict[str, Any]:
        return {"keywords": self.keywords, "patterns": self.patterns}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "KeywordClassifier":
        return cls(config.get("keywords", ()), patterns=config.get("patterns", ()))

    def __repr__(self) -> str:
        return f"KeywordClassifier(keywords={self.keywords!r}, patterns={self.patterns!r})"
