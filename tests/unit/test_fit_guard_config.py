"""fit_guard(config=FitConfig(...)) on the tiny model: the config stored in the guard, the typed report and
its JSON keys, the old keywords, a given Objective, and how often the fit hashes the embedding matrix."""

from __future__ import annotations

import sys
import warnings

import pytest

from eco_unlearn import GuardedModel, KeywordClassifier, fit_classifier, fit_guard, models
from eco_unlearn.classifier import ErrorRates
from eco_unlearn.data.items import PromptItem
from eco_unlearn.errors import InputError, ObjectiveError
from eco_unlearn.fitting import FitConfig, SearchConfig, SearchResult, TokensConfig, make_objective
from eco_unlearn.runtime.guard import Guard
from eco_unlearn.runtime.tokens import TokenSelection

FORGET = [PromptItem(f"Question {i} about Harry Potter?", choices=("yes", "no"), answer_index=i % 2) for i in range(8)]
RETAIN = ["What is the capital of France?"]
UNREACHABLE = FitConfig(chat=False, search=SearchConfig(objective="choice_accuracy", target=-1.0, strength_range=(0.01, 1.0), budget=3))


def keyword():
    return KeywordClassifier(["Harry Potter"])


def test_the_guard_stores_its_config_and_report(model, tok, tmp_path):
    config = UNREACHABLE.updated(name="hp", seed=5)
    result = fit_guard(model, tok, FORGET, RETAIN, config, classifier=keyword())
    assert result.guard.metadata["fit_config"] == config.to_dict()
    assert result.guard.metadata["fit_report"] == result.report.to_dict()
    saved = Guard.load(result.guard.save(tmp_path / "guard"))
    assert FitConfig.from_dict(saved.metadata["fit_config"]) == config
    assert saved.targets[0].name == "hp" and saved.seed == 5


def test_the_report_is_typed(model, tok):
    report = fit_guard(model, tok, FORGET, RETAIN, UNREACHABLE, classifier=keyword()).report
    assert isinstance(report.held_out, ErrorRates) and isinstance(report.search, SearchResult)
    assert report.held_out.negatives == report.calibration.held_out.negatives == report.splits.negative_test
    assert report.calibration.alpha == 0.01 and report.calibration.threshold == report.held_out.threshold
    assert report.objective.name == "choice_accuracy" and report.objective.items == len(FORGET)
    assert report.corruption.tokens == TokenSelection()  # no entities: all_but_last
    assert report.seconds.total >= report.seconds.search >= 0 and report.classifier.kind == "keyword"


def test_the_reports_json_has_the_keys_it_always_had(model, tok):
    config = UNREACHABLE.updated(tokens=TokensConfig([TokenSelection("entities", entities=["Harry Potter"]), TokenSelection("all")]))
    data = fit_guard(model, tok, FORGET, RETAIN, config, classifier=keyword()).report.to_dict()
    assert list(data) == [
        "target", "classifier", "splits", "calibration", "held_out", "objective", "search", "strength", "corruption",
        "met", "seconds", "eco_unlearn_version", "warnings", "token_candidates",
    ]
    assert list(data["classifier"]) == ["kind", "repr"]
    assert list(data["splits"]) == [
        "forget_train", "forget_test", "negative_train", "negative_calibration", "negative_test", "retain", "general",
    ]
    assert list(data["calibration"]) == [
        "method", "alpha", "threshold", "calibration_negatives", "quantile_rank", "held_out_fpr", "held_out_fnr",
        "held_out_false_positives", "held_out_negatives", "held_out_false_negatives", "held_out_positives",
    ]
    assert list(data["held_out"]) == [
        "fpr", "fnr", "threshold", "false_positives", "negatives", "false_negatives", "positives", "missed",
        "wrongly_flagged", "fpr_retain", "retain_negatives",
    ]
    assert list(data["objective"]) == [
        "name", "goal", "target", "items", "before", "after", "after_end_to_end", "items_flagged_end_to_end",
        "met_end_to_end", "before_exact",  # new keys go last
    ]
    assert list(data["search"]) == [
        "method", "strength", "value", "met", "goal", "target", "trace", "message", "repeated", "evaluations",
    ]
    assert list(data["search"]["trace"][0]) == ["strength", "value", "met", "exact"]
    assert list(data["corruption"]) == ["name", "params", "tokens"]
    assert list(data["corruption"]["tokens"]) == ["strategy", "entities", "fallback"]
    assert list(data["seconds"]) == ["classifier", "search", "end_to_end", "total"]
    assert [list(t) for t in data["token_candidates"]] == [["tokens", "strength", "value", "met", "evaluations"]] * 2
    assert data["calibration"]["held_out_negatives"] == data["held_out"]["negatives"]


def test_old_keywords_still_fit_the_same_guard_with_warnings(model, tok):
    new = fit_guard(model, tok, FORGET, RETAIN, UNREACHABLE, classifier=keyword())
    with pytest.warns(DeprecationWarning) as caught:
        old = fit_guard(
            model, tok, FORGET, RETAIN, classifier=keyword(), objective="choice_accuracy",
            objective_options={"target": -1.0}, strength_range=(0.01, 1.0), budget=3, chat=False,
        )
    named = " ".join(str(w.message) for w in caught)
    for field in ("search.objective", "search.objective_options", "search.strength_range", "search.budget", "FitConfig.chat"):
        assert field in named
    assert all(w.filename == __file__ for w in caught)  # the warnings point at the caller
    assert old.guard.metadata["fit_config"] == new.guard.metadata["fit_config"]
    strip = lambda report: {k: v for k, v in report.to_dict().items() if k != "seconds"}  # noqa: E731
    assert strip(old.report) == strip(new.report)


def test_old_report_keys_still_read_with_a_warning(model, tok):
    report = fit_guard(model, tok, FORGET, RETAIN, UNREACHABLE, classifier=keyword()).report
    with pytest.warns(DeprecationWarning, match=r"read the attribute \.fpr instead"):
        assert report.held_out["fpr"] == report.held_out.fpr
    with pytest.warns(DeprecationWarning):
        assert report.search["evaluations"] == report.search.evaluations
        assert report.objective["name"] == report.objective.name


def test_fit_classifier_takes_the_config_and_its_old_keywords(model, tok):
    config = FitConfig(seed=3)
    fitted = fit_classifier(FORGET, RETAIN, config, classifier=keyword())
    with pytest.warns(DeprecationWarning, match=r"fit_classifier\(seed=\.\.\.\) is deprecated .* FitConfig.seed"):
        old = fit_classifier(FORGET, RETAIN, classifier=keyword(), seed=3)
    assert old.splits == fitted.splits and old.calibration.to_dict() == fitted.calibration.to_dict()
    with pytest.raises(InputError, match="unknown keyword argument 'budget'"):
        fit_classifier(FORGET, RETAIN, classifier=keyword(), budget=3)


def test_an_unknown_keyword_fails_before_any_work(model, tok):
    with pytest.raises(InputError, match="unknown keyword argument 'budjet'; did you mean 'budget'"):
        fit_guard(model, tok, FORGET, RETAIN, classifier=keyword(), budjet=3)


def test_a_given_objective_must_agree_with_the_config(model, tok):
    objective = make_objective("choice_accuracy", FORGET, chat=False, target=-1.0)
    result = fit_guard(model, tok, FORGET, RETAIN, UNREACHABLE, classifier=keyword(), objective=objective)
    assert result.report.objective.target == -1.0
    for config, message in (
        (UNREACHABLE.updated(search__objective="answer_recall"), "FitConfig.search.objective is 'answer_recall'"),
        (UNREACHABLE.updated(search__target=0.2), "FitConfig.search.target is 0.2"),
        (UNREACHABLE.updated(search__objective_options={"format": "letters"}), "carries its own options"),
    ):
        with pytest.raises(ObjectiveError, match=message):
            fit_guard(model, tok, FORGET, RETAIN, config, classifier=keyword(), objective=objective)


def test_old_objective_options_that_are_objects_still_work_and_are_not_stored(model, tok):
    forget = [PromptItem(f"Question {i} about Harry Potter?", answer="yes") for i in range(6)]
    reference = [PromptItem(f"Question {i} about Paris?", answer="no") for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = fit_guard(
            model, tok, forget, RETAIN, classifier=keyword(), objective="match_reference", strength=0.5, chat=False,
            objective_options={"statistic": "answer_prob", "reference_items": reference},
        )
    assert result.report.objective.name == "match_reference" and result.report.search.method == "fixed"
    assert result.guard.metadata["fit_config"]["search"]["objective_options"] == {"statistic": "answer_prob"}


# ------------------------------------------------------------------------------------------ fingerprints


def fit_counting(model, tok, monkeypatch, budget: int) -> tuple[int, int, int]:
    """(GuardedModels built, embedding-matrix hashes, search evaluations) of one fit with ``budget`` grid points."""
    built, hashes = [], []
    real_fingerprint, real_init = models.fingerprint, GuardedModel.__init__

    def counting_fingerprint(net):
        hashes.append(net)
        return real_fingerprint(net)

    def counting_init(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        for module in list(sys.modules.values()):  # wherever the function was imported
            if getattr(module, "__name__", "").startswith("eco_unlearn") and getattr(module, "fingerprint", None) is real_fingerprint:
                patch.setattr(module, "fingerprint", counting_fingerprint)
        patch.setattr(GuardedModel, "__init__", counting_init)
        result = fit_guard(model, tok, FORGET, RETAIN, UNREACHABLE.updated(search__method="grid", search__budget=budget), classifier=keyword())
    return len(built), len(hashes), result.report.search.evaluations


@pytest.mark.parametrize("budget", [3, 6])
def test_one_guarded_model_serves_every_evaluation_of_the_fit(model, tok, monkeypatch, budget):
    built, hashes, evaluations = fit_counting(model, tok, monkeypatch, budget)
    assert evaluations == budget
    assert built == 1  # each evaluation, and the end-to-end check, attaches its guard to the same GuardedModel
    # today: one hash for the guard's fingerprint, then one per attach (Guard.check_model); see the test below
    assert hashes <= 2 + evaluations


def test_a_fit_hashes_the_embedding_matrix_a_constant_number_of_times(model, tok, monkeypatch):
    few, many = (fit_counting(model, tok, monkeypatch, budget)[1] for budget in (3, 6))
    assert few == many == 1
