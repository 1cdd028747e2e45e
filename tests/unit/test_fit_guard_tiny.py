"""fit_guard end to end on the tiny model: reports, unreachable targets, bad input."""

from __future__ import annotations

import pytest

from eco_unlearn import KeywordClassifier, fit_guard
from eco_unlearn.classifier import CalibrationError
from eco_unlearn.items import ItemsError, PromptItem

FORGET = [
    PromptItem(f"Question {i} about Harry Potter?", choices=("yes", "no"), answer_index=i % 2) for i in range(8)
]


def test_unreachable_target_keeps_the_best_strength_and_marks_the_guard(model, tok):
    result = fit_guard(
        model, tok, FORGET, ["What is the capital of France?"], classifier=KeywordClassifier(["Harry Potter"]),
        objective="choice_accuracy", objective_options={"target": -1.0}, strength_range=(0.01, 1.0), budget=4,
        chat=False,
    )
    report = result.report
    assert not report.met and result.guard.metadata["met_target"] is False
    assert report.warnings and "misses the target" in report.warnings[0]
    assert report.search["evaluations"] <= 4
    assert report.held_out["fpr"] == 0.0 and report.held_out["fnr"] == 0.0
    assert result.guard.targets[0].calibration["calibration_negatives"] >= 99
    assert report.strength in [p["strength"] for p in report.search["trace"]]


def test_fixed_strength_skips_the_search(model, tok):
    result = fit_guard(model, tok, FORGET, classifier=KeywordClassifier(["Harry Potter"]), strength=0.5, chat=False)
    assert result.report.search["method"] == "fixed" and result.report.strength == 0.5
    assert result.report.objective["name"] == "choice_accuracy"  # chosen because the items have choices


def test_bad_fit_input(model, tok):
    keyword = KeywordClassifier(["Harry Potter"])
    with pytest.raises(ItemsError, match="in both the forget and the retain set"):
        fit_guard(model, tok, FORGET, [FORGET[0].prompt.upper()], classifier=keyword, strength=0.5)
    with pytest.raises(CalibrationError, match="needs at least 99 held-out negatives"):
        fit_guard(model, tok, FORGET, ["hello"], general=None, classifier=keyword, strength=0.5)
    with pytest.raises(ItemsError, match="at least 2 distinct prompts"):
        fit_guard(model, tok, FORGET[:1], classifier=keyword, strength=0.5)
    with pytest.raises(ItemsError, match="neither reference answers nor choices"):
        fit_guard(model, tok, ["Harry Potter one?", "Harry Potter two?"], classifier=keyword)
