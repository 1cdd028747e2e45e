"""Combine classifiers: a prompt is in scope when any member says so."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import GuardError
from .base import PromptClassifier, build_classifier, register_classifier

__all__ = ["AnyOfClassifier"]


@register_classifier
class AnyOfClassifier:
    """The highest score of its members, e.g. exact names (``KeywordClassifier``) plus an
    ``EncoderClassifier`` that catches paraphrases which never name them. ``fit`` fits the members that
    can be fitted; the threshold is calibrated on the combined score like any other."""

    kind: ClassVar[str] = "any_of"

    def __init__(self, members: Sequence[PromptClassifier]) -> None:
        self.members = list(members)
        if not self.members:
            raise GuardError("an any-of classifier needs at least one member")

    def fit(self, forget_texts: Sequence[str], retain_texts: Sequence[str], *, extra_negatives: Sequence[str] = (), **kwargs: Any) -> "AnyOfClassifier":
        for member in self.members:
            if hasattr(member, "fit"):
                member.fit(forget_texts, retain_texts, extra_negatives=extra_negatives, **kwargs)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.max([m.predict_proba(texts) for m in self.members], axis=0)

    def to_config(self) -> dict[str, Any]:
        return {"members": [{"kind": m.kind, "config": m.to_config()} for m in self.members]}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.tensors().items()}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "AnyOfClassifier":
        members = []
        for i, entry in enumerate(config["members"]):
            own = {k[len(f"{i}."):]: v for k, v in tensors.items() if k.startswith(f"{i}.")}
            members.append(build_classifier(entry["kind"], entry.get("config", {}), own))
        return cls(members)

    def __repr__(self) -> str:
        return f"AnyOfClassifier({self.members!r})"
