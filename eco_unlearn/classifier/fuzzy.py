"""Names matched despite typos: every word of a name within a small edit distance (optimal string
alignment: insertions, deletions, substitutions and swaps of adjacent letters) of consecutive words of the
text, case-insensitively. Short words must match exactly, so "Lee" never matches "Lea"."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import GuardError
from .base import register_classifier
from .text import as_phrases

__all__ = ["FuzzyNameClassifier", "osa_distance"]

_WORD = re.compile(r"\w+")


def osa_distance(a: str, b: str) -> int:
    """Optimal-string-alignment edit distance (Damerau-Levenshtein without repeated edits of a substring)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


@register_classifier
class FuzzyNameClassifier:
    """Flags a text (1.0) when one of ``names`` occurs with at most ``max_edits`` edits per word of at
    least ``min_length`` letters (shorter words exactly)."""

    kind: ClassVar[str] = "fuzzy_name"

    def __init__(self, names: str | Sequence[str], *, max_edits: int = 1, min_length: int = 5) -> None:
        self.names = [n.strip() for n in as_phrases(names) if n.strip()]
        if not self.names:
            raise GuardError("a fuzzy name classifier needs at least one name")
        self.max_edits, self.min_length = int(max_edits), int(min_length)
        self._words = [tuple(w.lower() for w in _WORD.findall(n)) for n in self.names]

    def _close(self, word: str, target: str) -> bool:
        if word == target:
            return True
        if len(target) < self.min_length or abs(len(word) - len(target)) > self.max_edits:
            return False
        return osa_distance(word, target) <= self.max_edits

    def _matches(self, text: str) -> bool:
        words = [w.lower() for w in _WORD.findall(text)]
        for name in self._words:
            n = len(name)
            for start in range(len(words) - n + 1):
                if all(self._close(words[start + k], name[k]) for k in range(n)):
                    return True
        return False

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([1.0 if self._matches(t) else 0.0 for t in texts], dtype=np.float64)

    def to_config(self) -> dict[str, Any]:
        return {"names": self.names, "max_edits": self.max_edits, "min_length": self.min_length}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "FuzzyNameClassifier":
        return cls(config["names"], max_edits=config.get("max_edits", 1), min_length=config.get("min_length", 5))

    def __repr__(self) -> str:
        return f"FuzzyNameClassifier(names={self.names!r}, max_edits={self.max_edits})"
