"""Old import paths of eco-unlearn 0.1, kept working for one release with a ``DeprecationWarning``.

Modules moved into sub-packages (``eco_unlearn.guarded`` is now ``eco_unlearn.runtime.guarded``) are
served by an import hook that hands out the new module under the old name; names the package root no
longer exports (``eco_unlearn.CORRUPTIONS``) are served by the root's ``__getattr__``. Both go in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "MOVED_NAMES", "install", "moved_name"]

MOVED_MODULES = {
    "eco_unlearn.prompts": "eco_unlearn.runtime.prompts",
    "eco_unlearn.tokens": "eco_unlearn.runtime.tokens",
    "eco_unlearn.corruption": "eco_unlearn.runtime.corruption",
    "eco_unlearn.guard": "eco_unlearn.runtime.guard",
    "eco_unlearn.guarded": "eco_unlearn.runtime.guarded",
    "eco_unlearn.fit": "eco_unlearn.fitting",
    "eco_unlearn.objectives": "eco_unlearn.fitting.objectives",
    "eco_unlearn.search": "eco_unlearn.fitting.search",
    "eco_unlearn.items": "eco_unlearn.data.items",
    "eco_unlearn.perturb": "eco_unlearn.data.perturb",
    "eco_unlearn.encoders": "eco_unlearn.classifier.backbone",
    "eco_unlearn.text": "eco_unlearn.classifier.text",
    "eco_unlearn.bench.finetune": "eco_unlearn.training.sft",
    "eco_unlearn.bench.parallel": "eco_unlearn.parallel",
    "eco_unlearn.bench.reports": "eco_unlearn.bench.saving",
    "eco_unlearn.bench.serve": "eco_unlearn.bench.load",
    "eco_unlearn.serve.guards": "eco_unlearn.serve.reload",
}

# names the root exported in 0.1 -> the module that exports them now
MOVED_NAMES = {
    "AnyOfClassifier": "eco_unlearn.classifier",
    "CLASSIFIERS": "eco_unlearn.classifier",
    "ConstantClassifier": "eco_unlearn.classifier",
    "PromptClassifier": "eco_unlearn.classifier",
    "load_classifier": "eco_unlearn.classifier",
    "register_classifier": "eco_unlearn.classifier",
    "save_classifier": "eco_unlearn.classifier",
    "CORRUPTIONS": "eco_unlearn.runtime",
    "register_corruption": "eco_unlearn.runtime",
    "PrefillInputs": "eco_unlearn.runtime",
    "OBJECTIVES": "eco_unlearn.fitting",
    "Objective": "eco_unlearn.fitting",
    "register_objective": "eco_unlearn.fitting",
    "fit_classifier": "eco_unlearn.fitting",
    "FitReport": "eco_unlearn.fitting",
    "PromptItem": "eco_unlearn.data",
    "read_items": "eco_unlearn.data",
    "perturb_answers": "eco_unlearn.data",
    "EMBEDDED_MODELS": "eco_unlearn.models",
    "ModelFingerprint": "eco_unlearn.models",
}


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} moved to {new}; import it from there (the old path goes in eco-unlearn 0.3)",
                  DeprecationWarning, stacklevel=stacklevel)


def moved_name(name: str) -> Any:
    """The object the root used to export as ``name``, with a warning; AttributeError for any other name."""
    if name not in MOVED_NAMES:
        raise AttributeError(f"module 'eco_unlearn' has no attribute {name!r}")
    _warn(f"eco_unlearn.{name}", f"{MOVED_NAMES[name]}.{name}", stacklevel=4)  # the caller of the root's __getattr__
    return getattr(importlib.import_module(MOVED_NAMES[name]), name)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a moved module's old name and loads it as the module at its new place."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType:
        _warn(spec.name, MOVED_MODULES[spec.name], stacklevel=2)
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module is the one at the new path, already executed."""


def install() -> None:
    """Put the alias hook on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
