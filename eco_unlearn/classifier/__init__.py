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
from .fuzzy import FuzzyNameClassifier
from .keyword import KeywordClassifier
from .lexical import LexicalClassifier
from .normalize import NormalizingClassifier, normalize_text
from .people import PeopleClassifier, hardened_people_classifier

__all__ = [
    "AnyOfClassifier",
    "CLASSIFIERS",
    "CalibrationError",
    "ConstantClassifier",
    "EncoderClassifier",
    "ErrorRates",
    "FuzzyNameClassifier",
    "KeywordClassifier",
    "LexicalClassifier",
    "NormalizingClassifier",
    "PeopleClassifier",
    "PromptClassifier",
    "conformal_threshold",
    "error_rates",
    "hardened_people_classifier",
    "load_classifier",
    "min_calibration_size",
    "normalize_text",
    "register_classifier",
    "save_classifier",
]
