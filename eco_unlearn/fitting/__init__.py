"""Offline fitting: from examples of what to forget to a guard (classifier, threshold, strength)."""

from .classifier_fit import ClassifierFit, default_classifier, fit_classifier
from .objectives import OBJECTIVES, Objective, make_objective, register_objective
from .pipeline import FitReport, FitResult, corrupt_every_prompt, default_strength_range, fit_guard
from .search import SEARCHES, SearchResult

__all__ = [
    "OBJECTIVES", "SEARCHES", "ClassifierFit", "FitReport", "FitResult", "Objective", "SearchResult",
    "corrupt_every_prompt", "default_classifier", "default_strength_range", "fit_classifier", "fit_guard",
    "make_objective", "register_objective",
]
