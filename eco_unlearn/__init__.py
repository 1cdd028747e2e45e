"""eco-unlearn: make a causal LM forget chosen knowledge by corrupting the embeddings of flagged prompts.

The weights are never modified: a prompt classifier flags prompts in a forget scope, and a corruption is
applied to those prompts' input embeddings at the prefill pass only.
"""

__version__ = "0.1.0"

from .classifier import (
    CLASSIFIERS,
    AnyOfClassifier,
    ConstantClassifier,
    EncoderClassifier,
    KeywordClassifier,
    PromptClassifier,
    load_classifier,
    register_classifier,
    save_classifier,
)
from .runtime.corruption import CORRUPTIONS, CorruptionSpec, register_corruption
from .errors import (
    CorruptionError,
    EcoUnlearnError,
    GuardError,
    IncompatibleGuardError,
    ModelError,
    PromptError,
)
from .fitting import FitConfig, FitReport, FitResult, fit_classifier, fit_guard
from .runtime.guard import Guard, GuardDecision, Target
from .runtime.guarded import GuardedModel, PrefillInputs
from .data.items import PromptItem, read_items
from .models import EMBEDDED_MODELS, ModelFingerprint, fingerprint, load_model
from .fitting.objectives import OBJECTIVES, Objective, register_objective
from .data.perturb import perturb_answers
from .runtime.tokens import TokenSelection

__all__ = [
    "AnyOfClassifier",
    "CLASSIFIERS",
    "ConstantClassifier",
    "EncoderClassifier",
    "FitConfig",
    "FitReport",
    "FitResult",
    "OBJECTIVES",
    "Objective",
    "PromptItem",
    "fit_classifier",
    "fit_guard",
    "perturb_answers",
    "load_classifier",
    "read_items",
    "register_objective",
    "save_classifier",
    "CORRUPTIONS",
    "CorruptionError",
    "CorruptionSpec",
    "EMBEDDED_MODELS",
    "EcoUnlearnError",
    "Guard",
    "GuardDecision",
    "GuardError",
    "GuardedModel",
    "IncompatibleGuardError",
    "KeywordClassifier",
    "ModelError",
    "ModelFingerprint",
    "PrefillInputs",
    "PromptClassifier",
    "PromptError",
    "Target",
    "TokenSelection",
    "fingerprint",
    "load_model",
    "register_classifier",
    "register_corruption",
]
