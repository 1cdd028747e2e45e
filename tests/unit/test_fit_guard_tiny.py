"""fit_guard end to end on the tiny model: reports, unreachable targets, bad input."""

from __future__ import annotations

import pytest

from eco_unlearn import KeywordClassifier, fit_guard
from eco_unlearn.classifier import CalibrationError
from eco_unlearn.data.items import ItemsError, PromptItem
from eco_unlearn.fitting import FitConfig, SearchConfig, TokensConfig
from eco_unlearn.runtime.tokens import TokenSelection

FORGET = [
    PromptItem(f"Question {i} about Harry Potter?", choices=("yes", "no"), answer_index=i % 2) for i in range(8)
]


def test_unreachable_target_keeps_the_best_strength_and_marks_the_guard(model, tok):
    config = FitConfig(chat=False, search=SearchConfig(objective="choice_accuracy", target=-1.0, strength_range=(0.01, 1.0), budget=4))
    result = fit_guard(
        model, tok, FORGET, ["What is the capital of France?"], config, classifier=KeywordClassifier(["Harry Potter"]),
    )
    report = result.report
    assert not report.met and result.guard.metadata["met_target"] is False
    assert report.warnings and "misses the target" in report.warnings[0]
    assert report.search.evaluations <= 4
    assert report.held_out.fpr == 0.0 and report.held_out.fnr == 0.0
    assert result.guard.targets[0].calibration["calibration_negatives"] >= 99
    assert report.strength in [p.strength for p in report.search.trace]


def test_fixed_strength_skips_the_search(model, tok):
    config = FitConfig(chat=False, search=SearchConfig(strength=0.5))
    result = fit_guard(model, tok, FORGET, config=config, classifier=KeywordClassifier(["Harry Potter"]))
    assert result.report.search.method == "fixed" and result.report.strength == 0.5
    assert result.report.objective.name == "choice_accuracy"  # chosen because the items have choices


def test_grid_search_spends_the_budget_as_its_points(model, tok):
    result = fit_guard(
        model, tok, FORGET, ["What is the capital of France?"], classifier=KeywordClassifier(["Harry Potter"]),
        objective="choice_accuracy", objective_options={"target": -1.0}, strength_range=(0.01, 1.0), search="grid",
        budget=3, chat=False,
    )
    assert result.report.search["method"] == "grid" and result.report.search["evaluations"] == 3


def test_bad_fit_input(model, tok):
    keyword = KeywordClassifier(["Harry Potter"])
    fixed = FitConfig(search=SearchConfig(strength=0.5))
    with pytest.raises(ItemsError, match="in both the forget and the retain set"):
        fit_guard(model, tok, FORGET, [FORGET[0].prompt.upper()], fixed, classifier=keyword)
    with pytest.raises(CalibrationError, match="needs at least 99 held-out negatives"):
        fit_guard(model, tok, FORGET, ["hello"], fixed, general=None, classifier=keyword)
    with pytest.raises(ItemsError, match="at least 2 distinct prompts"):
        fit_guard(model, tok, FORGET[:1], config=fixed, classifier=keyword)
    with pytest.raises(ItemsError, match="neither reference answers nor choices"):
        fit_guard(model, tok, ["Harry Potter one?", "Harry Potter two?"], classifier=keyword)


@pytest.mark.filterwarnings("ignore:prompt .* picked no token")
def test_token_candidates_are_searched_in_turn_and_the_best_is_kept(model, tok):
    candidates = [TokenSelection("entities", entities=["Hogwarts"], fallback=None), TokenSelection("all_but_last")]
    config = FitConfig(
        chat=False, tokens=TokensConfig(candidates),
        search=SearchConfig(objective="choice_accuracy", target=-1.0, strength_range=(0.01, 1.0), budget=3),
    )
    result = fit_guard(model, tok, FORGET, config=config, classifier=KeywordClassifier(["Harry Potter"]))
    tried = result.report.token_candidates
    assert [t.tokens.strategy for t in tried] == ["entities", "all_but_last"] and not any(t.met for t in tried)
    best = min(tried, key=lambda t: t.value)  # choice accuracy: lower is better
    assert result.guard.targets[0].tokens.strategy == best.tokens.strategy
    assert result.report.strength == best.strength and result.report.corruption.tokens == best.tokens
    # the entity never occurs and has no fallback: those searches corrupt nothing
    assert tried[0].value == result.report.objective.before


def test_the_first_token_candidate_that_meets_the_target_ends_the_search(model, tok):
    candidates = [TokenSelection("entities", entities=["Harry Potter"]), TokenSelection("all_but_last")]
    config = FitConfig(
        chat=False, tokens=TokensConfig(candidates),
        search=SearchConfig(objective="choice_accuracy", target=2.0, strength_range=(0.01, 1.0), budget=3),
    )
    result = fit_guard(model, tok, FORGET, config=config, classifier=KeywordClassifier(["Harry Potter"]))
    assert [t.tokens.strategy for t in result.report.token_candidates] == ["entities"]
    assert result.report.search.met and result.guard.targets[0].tokens.strategy == "entities"


def test_the_end_to_end_check_is_not_scored_again_when_every_forget_prompt_is_flagged(model, tok):
    from eco_unlearn.data.items import PromptItem as Item
    from eco_unlearn.fitting.objectives import make_objective

    items = [Item(f"Who is Harry Potter {i}?", answer="A wizard.", paraphrased_answer="A wizard boy.",
                  perturbed_answers=("A dog.", "A cat.")) for i in range(4)]
    config = FitConfig(chat=False, search=SearchConfig(strength=0.5))

    def fit(keyword):
        objective = make_objective("match_reference", items, reference_values=[1.0, 2.0], chat=False)
        calls = []
        real = objective.per_item
        objective.per_item = lambda guarded: calls.append(guarded.guard) or real(guarded)
        result = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier([keyword]), objective=objective)
        return result.report.objective, calls

    flagged_all, calls = fit("Harry Potter")
    assert flagged_all.after_end_to_end == flagged_all.after and len(calls) == 2  # unguarded, fixed strength
    flagged_none, calls = fit("Voldemort")
    assert len(calls) == 3  # the guard flags nothing: its own value is measured
    assert flagged_none.items_flagged_end_to_end == 0


@pytest.mark.parametrize(
    ("name", "options", "skipped"),
    [("answer_recall", {"known_only": False}, True), ("choice_accuracy", {}, True),
     ("choice_accuracy", {"format": "letters"}, False)],  # letters: the guard decides on the question + choices
)
def test_a_guard_that_flags_every_scored_prompt_gets_the_searched_value_without_a_rescore(model, tok, name, options, skipped):
    from eco_unlearn import GuardedModel
    from eco_unlearn.fitting.objectives import make_objective
    from eco_unlearn.fitting.pipeline import corrupt_every_prompt

    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard", choices=("A wizard", "A dog"), answer_index=0)
             for i in range(4)]
    objective = make_objective(name, items, chat=False, **options)
    calls = []
    real = objective.per_item
    objective.per_item = lambda guarded: calls.append(guarded.guard) or real(guarded)
    config = FitConfig(chat=False, search=SearchConfig(strength=0.5))
    result = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier(["Harry Potter"]), objective=objective)
    assert len(calls) == (2 if skipped else 3)  # unguarded, the fixed strength (and the end-to-end check)
    # the shortcut is exact: the fitted guard, scored for real, gives the searched value
    objective.per_item = real
    guarded = GuardedModel(model, tok, result.guard)
    assert objective.evaluate(guarded) == result.report.objective.after_end_to_end
    if name == "answer_recall":  # token for token: the fitted guard corrupts as the search's every-prompt guard did
        target = result.guard.targets[0]
        searched = corrupt_every_prompt(model, tok, target.corruption, target.tokens, seed=result.guard.seed)
        assert objective.generations(guarded) == objective.generations(searched) != objective.generations(GuardedModel(model, tok))
