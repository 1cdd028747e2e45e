"""Prompt classifiers: decide whether a prompt falls in a forget scope, and calibrate their threshold."""

from .base import (
    CLASSIFIERS,
    ConstantClassifier,
    PromptClassifier,
    load_classifier,
    register_classifier,
    save_classifier,
)
from .calibration import CalibrationError, ErrorRates, conformal_threshold, error_rates, min_calibration_size
from .combine import AnyOfClassifier
from .encoder import EncoderClassifier
from .keyword import KeywordClassifier

__all__ = [
    "AnyOfClassifier",
    "CLASSIFIERS",
    "CalibrationError",
    "ConstantClassifier",
    "EncoderClassifier",
    "ErrorRates",
    "KeywordClassifier",
    "PromptClassifier",
    "conformal_threshold",
    "error_rates",
    "load_classifier",
    "min_calibration_size",
    "register_classifier",
    "save_classifier",
]
