"""Offline fitting: from examples of what to forget to a guard (classifier, threshold, strength)."""

from .classifier_fit import ClassifierFit, default_classifier, fit_classifier
from .config import (
    CalibrationConfig,
    ClassifierConfig,
    CorruptionConfig,
    FitConfig,
    SearchConfig,
    TokenCandidate,
    TokensConfig,
)
from .objectives import OBJECTIVES, Objective, make_objective, register_objective
from .pipeline import corrupt_every_prompt, default_strength_range, every_prompt_guard, fit_guard
from .report import FitReport, FitResult
from .search import SEARCHES, SearchResult

__all__ = [
    "OBJECTIVES", "SEARCHES", "CalibrationConfig", "ClassifierConfig", "ClassifierFit", "CorruptionConfig",
    "FitConfig", "FitReport", "FitResult", "Objective", "SearchConfig", "SearchResult", "TokenCandidate",
    "TokensConfig", "corrupt_every_prompt", "default_classifier", "default_strength_range", "every_prompt_guard",
    "fit_classifier", "fit_guard", "make_objective", "register_objective",
]
