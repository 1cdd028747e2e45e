"""Classifier benchmark: held-out error rates of calibrated classifiers, and their throughput."""

from .benchmark import ClassifierBenchConfig, run_classifier_bench, summarise

__all__ = ["ClassifierBenchConfig", "run_classifier_bench", "summarise"]
