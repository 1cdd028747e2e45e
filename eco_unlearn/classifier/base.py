"""The classifier protocol, the registry of classifier kinds, and saving a classifier on its own.

A classifier is a plain object with ``predict_proba(texts) -> np.ndarray`` (probability that each text
is in scope), and, for saving, ``to_config()`` (JSON-able settings), ``tensors()`` (weights for
safetensors, possibly empty) and ``from_config(config, tensors)``. Kinds are registered by name in
``CLASSIFIERS`` so a guard can rebuild its classifiers from disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import GuardError
from ..validation import number
from ..io import atomic_dir, atomic_write_json
from ..registry import Registry

__all__ = [
    "CLASSIFIERS",
    "ConstantClassifier",
    "PromptClassifier",
    "load_classifier",
    "register_classifier",
    "save_classifier",
]


@runtime_checkable
class PromptClassifier(Protocol):
    kind: ClassVar[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def to_config(self) -> dict[str, Any]: ...

    def tensors(self) -> dict[str, torch.Tensor]: ...

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "PromptClassifier": ...


CLASSIFIERS: Registry[type[PromptClassifier]] = Registry("classifier kind", error=GuardError)


def register_classifier(cls: type | None = None, *, replace: bool = False):
    """Class decorator: make a classifier kind loadable from guard artifacts by its ``kind``.

    Registering a kind that exists already raises, unless ``replace=True``.
    """

    def decorator(cls: type) -> type:
        return CLASSIFIERS.register(getattr(cls, "kind", None), cls, replace=replace)

    return decorator(cls) if cls is not None else decorator


def build_classifier(kind: str, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PromptClassifier:
    """Rebuild a classifier of a registered ``kind``; any failure is a ``GuardError``."""
    cls = CLASSIFIERS.get(kind)
    try:
        return cls.from_config(config, tensors)
    except GuardError:
        raise
    except Exception as exc:  # a user-registered classifier may raise anything
        raise GuardError(f"cannot rebuild the {kind!r} classifier: {exc}") from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a missing or corrupt file into a ``GuardError``."""
    if not path.is_file():
        raise GuardError(f"classifier weights {path} are missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise GuardError(f"classifier weights {path} are corrupt: {exc}") from None


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def save_classifier(classifier: PromptClassifier, path: str | Path) -> Path:
    """Write ``classifier`` to a folder (``classifier.json`` plus ``weights.safetensors``), atomically."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GuardError(f"cannot save a classifier to {path}: it is a file")
    if path.is_dir() and any(path.iterdir()) and not (path / "classifier.json").is_file():
        raise GuardError(f"cannot save a classifier to {path}: the folder holds other files; choose a new one")
    with atomic_dir(path) as tmp:
        tensors = classifier.tensors()
        if tensors:
            write_tensors(tensors, tmp / "weights.safetensors")
        atomic_write_json(tmp / "classifier.json", {"kind": classifier.kind, "config": classifier.to_config(), "weights": bool(tensors)})
    return path


def load_classifier(path: str | Path) -> PromptClassifier:
    """Read a classifier folder written by ``save_classifier``."""
    path = Path(path)
    manifest = path / "classifier.json"
    if not manifest.is_file():
        raise GuardError(f"{path} is not a saved classifier: it has no classifier.json")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        kind, config, has_weights = data["kind"], data.get("config", {}), bool(data.get("weights"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise GuardError(f"{manifest} is malformed ({exc})") from None
    tensors = read_tensors(path / "weights.safetensors") if has_weights else {}
    return build_classifier(kind, config, tensors)


@register_classifier
class ConstantClassifier:
    """Gives every text the same score: ``1.0`` corrupts every prompt, as when a whole deployment must
    forget, or when measuring a corruption on its own (an oracle classifier)."""

    kind: ClassVar[str] = "constant"

    def __init__(self, score: float = 1.0) -> None:
        number(score, "a constant classifier's score", low=0, high=1, error=GuardError)
        self.score = float(score)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.full(len(texts), self.score, dtype=np.float64)

    def to_config(self) -> dict[str, Any]:
        return {"score": self.score}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "ConstantClassifier":
        return cls(config.get("score", 1.0))

    def __repr__(self) -> str:
        return f"ConstantClassifier({self.score:g})"
