"""eco-unlearn: make a causal LM forget chosen knowledge by corrupting the embeddings of flagged prompts.

The weights are never modified: a prompt classifier flags prompts in a forget scope, and a corruption is
applied to those prompts' input embeddings at the prefill pass only.

The root holds what a user needs: ``load_model``, ``fit_guard`` and its ``FitConfig``, ``Guard`` and the parts
of a hand-made one, ``GuardedModel``, and every exception. Everything else is imported from its sub-package:
``eco_unlearn.runtime``, ``.classifier``, ``.fitting``, ``.data``, ``.serve``, ``.bench``
(see docs/architecture.md).
"""

__version__ = "0.1.0"

from typing import Any

from . import deprecated
from .errors import (
    CalibrationError,
    ClassifierError,
    CorruptionError,
    DatasetError,
    EcoUnlearnError,
    FinetuneError,
    GuardError,
    IncompatibleGuardError,
    InputError,
    ItemsError,
    MetricError,
    MissingDependencyError,
    ModelError,
    ObjectiveError,
    ParallelError,
    PromptError,
    RegistryError,
    RunFailure,
    SearchError,
    ServeConfigError,
    ServerError,
    TofuDataError,
)
from .classifier import EncoderClassifier, KeywordClassifier
from .fitting import FitConfig, FitResult, fit_guard
from .models import fingerprint, load_model
from .runtime import CorruptionSpec, Guard, GuardDecision, GuardedModel, Target, TokenSelection

deprecated.install()

__all__ = [
    "CalibrationError",
    "ClassifierError",
    "CorruptionError",
    "CorruptionSpec",
    "DatasetError",
    "EcoUnlearnError",
    "EncoderClassifier",
    "FinetuneError",
    "FitConfig",
    "FitResult",
    "Guard",
    "GuardDecision",
    "GuardError",
    "GuardedModel",
    "IncompatibleGuardError",
    "InputError",
    "ItemsError",
    "KeywordClassifier",
    "MetricError",
    "MissingDependencyError",
    "ModelError",
    "ObjectiveError",
    "ParallelError",
    "PromptError",
    "RegistryError",
    "RunFailure",
    "SearchError",
    "ServeConfigError",
    "ServerError",
    "Target",
    "TofuDataError",
    "TokenSelection",
    "fingerprint",
    "fit_guard",
    "load_model",
]


def __getattr__(name: str) -> Any:
    """Names the root exported in 0.1 and no longer does: served with a ``DeprecationWarning`` (once: the
    name is then bound here)."""
    value = globals()[name] = deprecated.moved_name(name)
    return value
