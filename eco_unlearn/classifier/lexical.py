"""A fast learned classifier: hashed word and character n-grams under logistic regression.

No vocabulary to store and no neural pass: a text becomes word 1-2-grams and character 3-5-grams (inside
word boundaries, so a word's spelling variants and translations share most of them) hashed into
``2**bits`` columns each, log-scaled counts, L2-normalised; the weights are one vector. Thousands of
prompts per second on one core, so it can score every prompt of a busy deployment where a transformer
encoder cannot.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import ClassifierError, GuardError
from ..validation import number
from .base import register_classifier

__all__ = ["LexicalClassifier", "hashed_features"]


def hashed_features(texts: Sequence[str], bits: int):
    """Sparse ``[len(texts), 2 * 2**bits]`` features: word 1-2-grams and character 3-5-grams, log counts, L2 rows."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    common = {"n_features": 2**bits, "alternate_sign": False, "norm": None, "lowercase": True, "dtype": np.float32}
    words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", **common)
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
    features = hstack([words.transform(texts), chars.transform(texts)], format="csr")
    features.data = np.log1p(features.data)
    return normalize(features)


@register_classifier
class LexicalClassifier:
    """Logistic regression (balanced classes, inverse regularisation ``C``) on ``hashed_features``."""

    kind: ClassVar[str] = "lexical"

    def __init__(self, *, bits: int = 18, C: float = 10.0) -> None:
        number(C, "C", low=0, low_open=True, error=ClassifierError)
        if not 10 <= int(bits) <= 22:
            raise ClassifierError(f"bits must be between 10 and 22, not {bits}")
        self.bits, self.C = int(bits), float(C)
        self.weight: np.ndarray | None = None
        self.bias = 0.0

    def fit(self, forget_texts: Sequence[str], retain_texts: Sequence[str], *, extra_negatives: Sequence[str] = (),
            **_: Any) -> "LexicalClassifier":
        from sklearn.linear_model import LogisticRegression

        positives, negatives = list(forget_texts), list(retain_texts) + list(extra_negatives)
        if not positives or not negatives:
            raise ClassifierError("a lexical classifier needs forget prompts and negatives to train on")
        labels = np.array([1] * len(positives) + [0] * len(negatives))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = LogisticRegression(C=self.C, class_weight="balanced", solver="liblinear", max_iter=2000)
            model.fit(hashed_features(positives + negatives, self.bits), labels)
        self.weight, self.bias = model.coef_[0].astype(np.float32), float(model.intercept_[0])
        return self

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.weight is None:
            raise ClassifierError("this classifier is not fitted yet; call fit() first")
        if not texts:
            return np.zeros(0)
        return hashed_features(list(texts), self.bits) @ self.weight + self.bias

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(texts).astype(np.float64)))

    def to_config(self) -> dict[str, Any]:
        return {"bits": self.bits, "C": self.C, "bias": self.bias}

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.weight is None:
            raise ClassifierError("cannot save an unfitted classifier; call fit() first")
        return {"weight": torch.from_numpy(self.weight.copy())}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "LexicalClassifier":
        classifier = cls(bits=config.get("bits", 18), C=config.get("C", 10.0))
        weight = tensors.get("weight")
        if weight is None or weight.numel() != 2 * 2**classifier.bits:
            raise GuardError("the lexical classifier's weights are missing or of the wrong size")
        classifier.weight, classifier.bias = weight.float().numpy(), float(config.get("bias", 0.0))
        return classifier

    def __repr__(self) -> str:
        state = "fitted" if self.weight is not None else "not fitted"
        return f"LexicalClassifier(bits={self.bits}, C={self.C:g}, {state})"
