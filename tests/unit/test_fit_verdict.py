"""The fit's verdict is end to end, and negatives naming an entity are named, with the user's choices."""

from __future__ import annotations

import numpy as np
import pytest

from eco_unlearn import KeywordClassifier, fit_guard
from eco_unlearn.classifier import CalibrationError
from eco_unlearn.data.items import PromptItem
from eco_unlearn.fitting import CalibrationConfig, FitConfig, SearchConfig
from eco_unlearn.fitting.entity_negatives import calibrate, entity_matches, split_entity_negatives
from eco_unlearn.fitting.report import HeldOutRates, ObjectiveValues
from eco_unlearn.fitting.verdict import verdict

FORGET = [PromptItem(f"Question {i} about Harry Potter?", choices=("yes", "no"), answer_index=i % 2) for i in range(4)]
FORGET += [PromptItem(f"Question {i} about the boy wizard?", choices=("yes", "no"), answer_index=i % 2) for i in range(4)]


def values(after_end_to_end: float, items: int = 25) -> ObjectiveValues:
    return ObjectiveValues("choice_accuracy", "max", 0.5, items, 0.2, 0.9, after_end_to_end, 4, after_end_to_end >= 0.5)


def rates(positives: int, negatives: int) -> HeldOutRates:
    return HeldOutRates(threshold=0.5, false_positives=0, negatives=negatives, false_negatives=0, positives=positives)


def test_a_guard_that_misses_end_to_end_or_rests_on_few_prompts_does_not_meet_its_target():
    assert verdict(True, values(0.9), rates(25, 150)) == (True, [])
    met, reasons = verdict(True, values(0.1), rates(25, 150))
    assert not met and "NOT met end to end" in reasons[0] and "--about" in reasons[0]
    met, reasons = verdict(True, values(0.9), rates(5, 150))
    assert not met and "fewer than 20 held-out forget prompts" in reasons[0]
    met, reasons = verdict(True, values(0.9), rates(25, 40))
    assert not met and "fewer than 100 held-out negatives" in reasons[0]
    assert verdict(False, values(0.9), rates(25, 150))[0] is False
    met, reasons = verdict(True, values(0.9, items=15), rates(25, 150))
    assert not met and "rests on 15 forget items" in reasons[0] and "7%" in reasons[0]


def test_fit_guard_writes_the_end_to_end_verdict_into_report_and_guard(model, tok):
    # every prompt corrupted meets the target, but the keyword misses the four "boy wizard" prompts
    config = FitConfig(chat=False, search=SearchConfig(objective="choice_accuracy", target=2.0, strength=1.0))
    result = fit_guard(model, tok, FORGET, config=config, classifier=KeywordClassifier(["Harry Potter"]))
    report = result.report
    assert report.objective.items_flagged_end_to_end < report.objective.items
    assert not report.met and result.guard.metadata["met_target"] is False
    assert any("held-out forget prompts" in w for w in report.warnings)


def test_negatives_at_the_maximum_score_are_named_with_their_entity():
    texts = [f"everyday prompt {i}" for i in range(120)] + ["Which book series did J. K. Rowling write about Harry Potter?"] * 3
    scores = np.array([0.1] * 120 + [1.0] * 3)
    with pytest.raises(CalibrationError) as info:
        calibrate(scores, texts, 0.01, ["Harry Potter"], "error")
    message = str(info.value)
    assert "names 'Harry Potter'" in message and "J. K. Rowling" in message
    assert "--entity-negatives drop" in message and "accept" in message
    threshold, notes = calibrate(scores, texts, 0.01, ["Harry Potter"], "accept")
    assert threshold == 1.0 and "maximum score" in notes[0]
    assert calibrate(scores[:120], texts[:120], 0.01, ["Harry Potter"], "error")[0] < 1.0


def test_entity_negatives_can_be_dropped_or_moved_into_scope():
    positives = [PromptItem("Who is Harry Potter?")]
    negatives = [PromptItem("Harry Potter's publisher?"), PromptItem("Why is the sky blue?")]
    assert entity_matches([n.prompt for n in negatives], ["harry potter"]) == ["harry potter", None]
    pos, neg, notes = split_entity_negatives(positives, negatives, ["Harry Potter"], "drop")
    assert pos == positives and [n.prompt for n in neg] == ["Why is the sky blue?"] and "left out" in notes[0]
    pos, neg, notes = split_entity_negatives(positives, negatives, ["Harry Potter"], "forget")
    assert len(pos) == 2 and len(neg) == 1 and "forget prompts" in notes[0]
    assert split_entity_negatives(positives, negatives, ["Harry Potter"], "error") == (positives, negatives, [])
    with pytest.raises(CalibrationError, match="entity_negatives"):
        CalibrationConfig(entity_negatives="ignore")
