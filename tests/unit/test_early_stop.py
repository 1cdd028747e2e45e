"""Early stopping of the strength search's evaluations: the KS bound (``metrics.forget_quality_bound``),
``MatchReference.evaluate(stop_early=True)``, ``OutOfReach`` in the searches, and a fit on the tiny model
that chooses the same strength with and without it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eco_unlearn.classifier import KeywordClassifier
from eco_unlearn.data.items import PromptItem
from eco_unlearn.errors import MetricError
from eco_unlearn.fitting import FitConfig, SearchConfig, fit_guard
from eco_unlearn.fitting.objectives import MatchReference, make_objective
from eco_unlearn.fitting.pipeline import corrupt_every_prompt
from eco_unlearn.fitting.search import OutOfReach, bisection, bracket, scan
from eco_unlearn.metrics import forget_quality, forget_quality_bound
from eco_unlearn.runtime.corruption import CorruptionSpec
from eco_unlearn.runtime.tokens import TokenSelection


# ------------------------------------------------------------------------------------------ the bound


def test_the_bound_is_the_best_any_completion_reaches_on_small_samples():
    """Brute force over every placement of the unknown values on a grid that holds every distinct case
    (below, at and between the known and reference values, ties included)."""
    rng = np.random.default_rng(0)
    for _ in range(120):
        n, m = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        k = int(rng.integers(0, n))
        known = rng.integers(0, 4, size=k).astype(float)
        reference = rng.integers(0, 4, size=m) + 0.5 * rng.integers(0, 2)
        support = np.unique(np.concatenate([known, reference, [0.0]]))
        grid = np.unique(np.concatenate([support - 0.25, support, support + 0.25, [support[0] - 1, support[-1] + 1]]))
        best = max(forget_quality(np.concatenate([known, c]), reference)
                   for c in itertools.combinations_with_replacement(grid, n - k))
        assert forget_quality_bound(known, n, reference) == pytest.approx(best, abs=1e-12)


def test_the_bound_is_never_below_the_full_value_and_equals_it_when_nothing_is_unknown():
    rng = np.random.default_rng(1)
    for _ in range(100):
        full, reference = rng.normal(size=40) * rng.uniform(0.5, 2) + rng.uniform(-1, 1), rng.normal(size=16)
        for k in (0, 8, 16, 39):
            assert forget_quality_bound(full[:k], 40, reference) >= forget_quality(full, reference) - 1e-12
        assert forget_quality_bound(full, 40, reference) == forget_quality(full, reference)
    assert forget_quality_bound([], 5, [1.0, 2.0]) == pytest.approx(1.0)  # nothing known: anything is reachable


def test_far_values_bound_the_p_value_below_a_demanding_target_after_a_few_items():
    reference = np.linspace(0.4, 0.8, 16)
    assert forget_quality_bound([0.01] * 8, 40, reference) < 0.9  # 8 of 40 below every reference value
    assert forget_quality_bound([0.6] * 2, 40, reference) > 0.9  # two typical values say nothing yet


def test_bad_samples_get_a_clear_error():
    with pytest.raises(MetricError, match="known truth ratios"):
        forget_quality_bound([1.0, 2.0], 1, [1.0])
    with pytest.raises(MetricError, match="both models"):
        forget_quality_bound([1.0], 2, [])


# ------------------------------------------------------------------------------------------ the objective


class Replayed(MatchReference):
    """MatchReference whose statistics are fixed per prompt (no model): the early stop's logic alone."""

    def __init__(self, values: dict[str, float], reference: list[float], **options):
        self.values, self.scored = values, []
        items = [PromptItem(p, paraphrased_answer="x", perturbed_answers=("y",)) for p in values]
        super().__init__(items, reference_values=reference, target=0.9, **options)

    def statistics(self, model, items):
        self.scored.extend(i.prompt for i in items)
        return np.array([self.values[i.prompt] for i in items])


def test_an_evaluation_far_from_the_reference_stops_after_the_first_chunk():
    obj = Replayed({f"q{i}": 0.01 for i in range(40)}, list(np.linspace(0.4, 0.8, 16)), chunk=8)
    value = obj.evaluate(None, stop_early=True)
    assert isinstance(value, OutOfReach) and not obj.met(value)
    assert len(obj.scored) == 8 and value >= obj.evaluate(None)


def test_stopping_early_decides_met_or_missed_as_the_full_evaluation_does():
    rng = np.random.default_rng(2)
    reference = list(rng.normal(size=16))
    for shift in np.linspace(0, 2, 21):
        values = {f"q{i}": float(v) for i, v in enumerate(rng.normal(size=40) + shift)}
        obj = Replayed(values, reference, chunk=8)
        full = obj.evaluate(None)
        early = obj.evaluate(None, stop_early=True)
        assert obj.met(early) == obj.met(full)
        if isinstance(early, OutOfReach):
            assert early >= full
        else:
            assert early == full  # every item scored: the exact value


def test_the_default_chunk_gives_the_full_evaluations_values_bit_for_bit(bare):
    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard.", paraphrased_answer="A wizard boy.",
                        perturbed_answers=("A dog.", "A cat.", "A fox.")) for i in range(10)]
    probe = make_objective("match_reference", items, reference_values=[1.0], chat=False, batch_size=4)
    own = probe.statistics(bare, items).tolist()
    obj = make_objective("match_reference", items, reference_values=own, chat=False, batch_size=4, target=0.9)
    early = obj.evaluate(bare, stop_early=True)
    assert not isinstance(early, OutOfReach) and early == obj.evaluate(bare) == pytest.approx(1.0)
    far = make_objective("match_reference", items, reference_values=[1e6] * 10, chat=False, batch_size=4, target=0.9)
    assert isinstance(far.evaluate(bare, stop_early=True), OutOfReach)


def test_chunk_must_be_a_positive_integer():
    from eco_unlearn.errors import ObjectiveError

    with pytest.raises(ObjectiveError, match="chunk"):
        Replayed({"q": 1.0}, [1.0], chunk=0)


# ------------------------------------------------------------------------------------------ the searches


def stopping(values):
    """An evaluation that stops early where the full value misses 0.9: a bound above the value, halfway to 1."""

    def evaluate(s, exact=False):
        value = values(s)
        return value if exact or value >= 0.9 else OutOfReach((value + 1.0) / 2)

    return evaluate


@pytest.mark.parametrize("search", [scan, bracket, bisection])
def test_a_search_records_stopped_evaluations_as_missed_bounds_and_chooses_as_with_full_ones(search):
    def values(s):
        return 0.95 if s >= 3.0 else 0.2

    plain = search(values, low=0.01, high=100, goal="max", target=0.9, budget=30)
    early = search(stopping(values), low=0.01, high=100, goal="max", target=0.9, budget=30)
    assert early.met and (early.strength, early.value) == (plain.strength, plain.value)
    assert [p.strength for p in early.trace] == [p.strength for p in plain.trace] and early.repeated == 0
    assert all(p.exact == p.met for p in early.trace)


@pytest.mark.parametrize("search", [scan, bracket])
def test_when_nothing_meets_the_bounds_that_could_be_best_are_evaluated_in_full(search):
    """Bounds overstate the values, and not in their order: the refinement must still centre where full
    evaluations put it, and the kept value must be exact."""
    def values(s):
        return 0.8 - 0.1 * abs(math.log10(s) - 0.3)  # peak at 2, never 0.9

    plain = search(values, low=0.01, high=100, goal="max", target=0.9, points=5, rtol=0.05, budget=40)
    calls = []

    def evaluate(s, exact=False):
        calls.append(exact)
        value = values(s)
        return value if exact else OutOfReach(0.899 - 0.01 * value)  # valid bounds (>= value, < 0.9), in reverse order

    # every point is evaluated twice here (a bound, then in full): a budget of twice the plain search's evaluations
    early = search(evaluate, low=0.01, high=100, goal="max", target=0.9, points=5, rtol=0.05, budget=2 * plain.evaluations)
    assert not early.met and (early.strength, early.value) == (plain.strength, plain.value)
    assert [p.strength for p in early.trace] == [p.strength for p in plain.trace]
    assert early.repeated == sum(calls) > 0 and early.evaluations == len(calls) <= 2 * plain.evaluations
    assert str(round(early.value, 4)) in early.message  # the message quotes the exact value, not a bound


@pytest.mark.parametrize("search", [scan, bracket])
@pytest.mark.parametrize("budget", [6, 11, 20])
def test_bounds_to_evaluate_in_full_count_against_the_budget(search, budget):
    """The full evaluations that choosing the best point may need are reserved from the budget: at most one
    evaluation beyond it (the kept strength's final value), however many bounds could hide the best point."""
    calls = []

    def evaluate(s, exact=False):
        calls.append(exact)
        value = 0.8 - 0.1 * abs(math.log10(s) - 0.3)
        return value if exact else OutOfReach(0.899 - 0.01 * value)

    result = search(evaluate, low=0.01, high=100, goal="max", target=0.9, points=5, rtol=0.05, budget=budget)
    assert len(calls) <= budget + 1 and result.trace[[p.strength for p in result.trace].index(result.strength)].exact


def test_searches_that_need_values_get_every_one_in_full():
    from eco_unlearn.fitting.search import zeroth_order

    def values(s):
        return -abs(math.log(s) - math.log(2.0))

    early = zeroth_order(stopping(lambda s: values(s)), low=0.01, high=100, goal="max", target=0.0, budget=12)
    plain = zeroth_order(values, low=0.01, high=100, goal="max", target=0.0, budget=12)
    assert [(p.strength, p.value) for p in early.trace] == [(p.strength, p.value) for p in plain.trace]
    assert all(p.exact for p in early.trace)


def test_an_objective_without_early_stopping_keeps_its_own_evaluate(model, tok):
    """A user's objective that overrides evaluate(model) works under the default early_stop=True."""
    from eco_unlearn.fitting.objectives import Objective

    class Constant(Objective):
        goal = "min"

        def default_target(self):
            return 0.5

        def evaluate(self, model):
            return 0.1

    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard.") for i in range(4)]
    config = FitConfig(chat=False, search=SearchConfig(method="scan", strength_range=(0.01, 1.0)))
    report = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier(["Harry Potter"]),
                       objective=Constant(items)).report
    assert report.search.met and report.objective.before == 0.1 and report.objective.before_exact


# ------------------------------------------------------------------------------------------ a real fit


class StrengthDriven(MatchReference):
    """Truth ratios that move towards the reference as the attached guard's strength grows (the tiny random
    model's own barely move): the pipeline's use of the early stop, apart from any model's realism."""

    def statistics(self, model, items):
        self.scored = getattr(self, "scored", 0) + len(items)
        strength = model.guard.targets[0].corruption.strength if model.guard is not None else 0.0
        offsets = np.array([int(i.prompt.split()[-1].rstrip("?")) for i in items]) / 10
        return offsets + 3.0 / (1.0 + strength)


def test_a_fit_with_early_stopping_chooses_the_same_strength_for_less_work(model, tok):
    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard.", paraphrased_answer="A wizard boy.",
                        perturbed_answers=("A dog.", "A cat.")) for i in range(24)]
    reference = list(np.arange(24) / 10 + 0.1)  # reached near strength 30

    def fit(early_stop: bool):
        objective = StrengthDriven(items, reference_values=reference, chat=False, target=0.9, chunk=4)
        config = FitConfig(chat=False, search=SearchConfig(method="scan", strength_range=(0.01, 1000.0), early_stop=early_stop))
        result = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier(["Harry Potter"]), objective=objective)
        return result.report, objective.scored

    plain, plain_work = fit(False)
    early, early_work = fit(True)
    assert plain.search.met and early.strength == plain.strength and early.search.met
    assert [p.strength for p in early.search.trace] == [p.strength for p in plain.search.trace]
    assert any(not p.exact for p in early.search.trace) and all(p.exact for p in plain.search.trace)
    assert early_work < 0.75 * plain_work
    assert early.objective.after == plain.objective.after == early.search.value
    assert plain.objective.before_exact and not early.objective.before_exact
    assert early.objective.before >= plain.objective.before


def test_a_fit_that_meets_nothing_reports_the_exact_value_of_the_strength_it_keeps(model, tok):
    items = [PromptItem(f"Who is Harry Potter {i}?", answer="A wizard.", paraphrased_answer="A wizard boy.",
                        perturbed_answers=("A dog.", "A cat.")) for i in range(24)]
    objective = StrengthDriven(items, reference_values=[-5.0] * 24, chat=False, target=0.9, chunk=4)  # unreachable
    config = FitConfig(chat=False, search=SearchConfig(method="scan", strength_range=(0.01, 1000.0), budget=6))
    report = fit_guard(model, tok, items, config=config, classifier=KeywordClassifier(["Harry Potter"]), objective=objective).report
    assert not report.search.met and not report.met and report.search.repeated >= 1
    assert report.objective.after == forget_quality(objective.per_item(corrupt_every_prompt(
        model, tok, CorruptionSpec("gaussian_first_n", report.strength), TokenSelection("all_but_last"))), [-5.0] * 24)
