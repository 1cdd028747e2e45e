"""FitConfig: defaults, one validation error per setting, the JSON round trip, refused unknown settings,
``updated``, and what the token candidates resolve to. No model is loaded."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from eco_unlearn.errors import (
    CalibrationError,
    ClassifierError,
    CorruptionError,
    GuardError,
    InputError,
    ItemsError,
    ObjectiveError,
    SearchError,
)
from eco_unlearn.fitting import (
    CalibrationConfig,
    ClassifierConfig,
    CorruptionConfig,
    FitConfig,
    SearchConfig,
    TokenCandidate,
    TokensConfig,
)
from eco_unlearn.fitting.deprecated import apply_keywords
from eco_unlearn.runtime.tokens import TokenSelection


def test_defaults():
    config = FitConfig()
    assert (config.name, config.seed, config.chat) == ("forget", 0, None)
    assert config.classifier == ClassifierConfig("linear", "minilm", 0.25)
    assert config.calibration.alpha == 0.01
    search = config.search
    assert (search.method, search.budget, search.strength, search.strength_range) == ("auto", 30, None, None)
    assert (search.objective, search.target, search.objective_options) == (None, None, {})
    assert config.corruption == CorruptionConfig("gaussian_first_n", {})
    assert config.tokens.candidates == ()


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: ClassifierConfig(mode="deep"), ClassifierError, "unknown classifier mode 'deep'; choose linear or finetune"),
        (lambda: ClassifierConfig(backbone=" "), ClassifierError, "backbone must be"),
        (lambda: ClassifierConfig(test_fraction=0), ItemsError, r"test_fraction must lie in \(0, 1\), not 0"),
        (lambda: ClassifierConfig(test_fraction=True), ItemsError, "test_fraction must lie in"),
        (lambda: CalibrationConfig(alpha=1.5), CalibrationError, r"alpha must lie in \(0, 1\), not 1.5"),
        (lambda: CalibrationConfig(alpha="0.1"), CalibrationError, "alpha must lie in"),
        (lambda: SearchConfig(method="newton"), SearchError, "unknown search 'newton'; choose auto, bisection, zeroth_order, scan, bracket, grid"),
        (lambda: SearchConfig(budget=1), SearchError, "the evaluation budget must be an integer of at least 2, not 1"),
        (lambda: SearchConfig(budget=True), SearchError, "the evaluation budget must be an integer of at least 2"),
        (lambda: SearchConfig(budget=2.5), SearchError, "the evaluation budget must be an integer of at least 2"),
        (lambda: SearchConfig(strength=math.nan), SearchError, "strength must be a finite number or None"),
        (lambda: SearchConfig(strength_range=(1.0, 0.5)), SearchError, "0 < low < high < inf"),
        (lambda: SearchConfig(strength_range=(0, 1)), SearchError, "0 < low < high < inf"),
        (lambda: SearchConfig(strength_range=(1, math.inf)), SearchError, "0 < low < high < inf"),
        (lambda: SearchConfig(strength_range=(1,)), SearchError, "0 < low < high < inf"),
        (lambda: SearchConfig(objective="nosuch"), ObjectiveError, "unknown objective 'nosuch'; known objectives: "),
        (lambda: SearchConfig(target="low"), ObjectiveError, "target must be a finite number or None"),
        (lambda: SearchConfig(objective_options={"target": 0.1}), ObjectiveError, "set FitConfig.search.target instead"),
        (lambda: SearchConfig(objective_options={"chat": True}), ObjectiveError, "set FitConfig.chat instead"),
        (lambda: SearchConfig(objective_options={"items": object()}), ObjectiveError, "must be JSON values"),
        (lambda: SearchConfig(objective_options=["metric"]), ObjectiveError, "a mapping of option names"),
        (lambda: CorruptionConfig(name="melt"), CorruptionError, "unknown corruption 'melt'"),
        (lambda: CorruptionConfig(params={"sigma": 1}), CorruptionError, "takes no parameter"),
        (lambda: CorruptionConfig(params="n_dims=4"), CorruptionError, "'params' must be an object"),
        (lambda: TokenCandidate("nouns"), GuardError, "unknown token selection 'nouns'"),
        (lambda: TokenCandidate("entities", fallback="entities"), GuardError, "cannot itself be 'entities'"),
        (lambda: TokenCandidate("entities", entities=(1, 2)), GuardError, "entities must be strings"),
        (lambda: TokensConfig(candidates=["all"]), GuardError, "must hold TokenCandidate or TokenSelection"),
        (lambda: TokensConfig(candidates="all"), GuardError, "must be a list of token selections"),
        (lambda: FitConfig(name=""), GuardError, "a target needs a non-empty name"),
        (lambda: FitConfig(seed=True), GuardError, "seed must be a 64-bit signed integer, not True"),
        (lambda: FitConfig(seed=2**63), GuardError, "seed must be a 64-bit signed integer"),
        (lambda: FitConfig(chat="yes"), ObjectiveError, "chat must be True, False or None"),
        (lambda: FitConfig(search={"budget": 3}), InputError, "FitConfig.search must be a SearchConfig, not dict"),
        (lambda: FitConfig(search=SearchConfig(strength=-1.0)), CorruptionError, "out of range for corruption 'gaussian_first_n'"),
        (lambda: FitConfig(corruption=CorruptionConfig("shuffle"), search=SearchConfig(strength=2.0)), CorruptionError, "out of range"),
    ],
)
def test_each_setting_is_validated_with_its_error(build, error, message):
    with pytest.raises(error, match=message):
        build()


def custom() -> FitConfig:
    return FitConfig(
        name="hp", seed=7, chat=True,
        classifier=ClassifierConfig(mode="finetune", backbone="/models/encoder", test_fraction=0.3),
        calibration=CalibrationConfig(alpha=0.05),
        search=SearchConfig(method="grid", budget=5, strength_range=(0.1, 10), objective="answer_recall", target=0.1,
                            objective_options={"metric": "rouge_l", "max_new_tokens": 8}),
        corruption=CorruptionConfig("gaussian_first_n", {"n_dims": 4}),
        tokens=TokensConfig((TokenCandidate("entities", ("Hogwarts",), None), TokenCandidate("all_but_last"))),
    )


@pytest.mark.parametrize("config", [FitConfig(), custom()], ids=["defaults", "custom"])
def test_json_round_trip(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert data == config.to_dict()
    again = FitConfig.from_dict(data)
    assert again == config
    assert again.search.strength_range == config.search.strength_range and isinstance(again.tokens.candidates, tuple)


def test_to_dict_is_plain_json():
    data = custom().to_dict()
    assert data["search"]["strength_range"] == [0.1, 10.0]
    assert data["tokens"]["candidates"][0] == {"strategy": "entities", "entities": ["Hogwarts"], "fallback": None}
    assert set(data) == {"name", "seed", "chat", "classifier", "calibration", "search", "corruption", "tokens"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"budget": 3}, "unknown setting 'budget' in FitConfig"),
        ({"search": {"budjet": 3}}, r"unknown setting 'budjet' in FitConfig.search; did you mean 'budget'\?"),
        ({"calibration": {"alpha": 0.1, "beta": 1}}, "unknown setting 'beta' in FitConfig.calibration"),
        ({"tokens": {"candidates": [{"strategy": "all", "fallbak": None}]}}, "'fallbak' in FitConfig.tokens.candidates; did you mean 'fallback'"),
        ({"search": 3}, "FitConfig.search must be a mapping of settings, not int"),
        ([1, 2], "FitConfig must be a mapping of settings, not list"),
    ],
)
def test_from_dict_refuses_unknown_settings(data, message):
    with pytest.raises(InputError, match=message):
        FitConfig.from_dict(data)


def test_from_dict_validates_values():
    with pytest.raises(SearchError, match="at least 2"):
        FitConfig.from_dict({"search": {"budget": 1}})


def test_updated_is_a_validated_copy():
    config = FitConfig()
    changed = config.updated(seed=3, search__budget=4, calibration__alpha=0.05, tokens=TokensConfig([TokenSelection("all")]))
    assert (changed.seed, changed.search.budget, changed.calibration.alpha) == (3, 4, 0.05)
    assert changed.tokens.candidates == (TokenCandidate("all"),)
    assert config == FitConfig() and changed.search is not config.search  # the original is untouched
    with pytest.raises(SearchError, match="at least 2"):
        config.updated(search__budget=1)
    with pytest.raises(InputError, match=r"unknown setting 'search__budjet' in SearchConfig; did you mean 'budget'\?"):
        config.updated(search__budjet=4)
    with pytest.raises(InputError, match="unknown setting 'seed__value' in FitConfig"):
        config.updated(seed__value=1)


def test_token_candidates_resolve_against_the_fit_entities():
    assert TokensConfig().selections(()) == [TokenSelection()]
    assert TokensConfig().selections(("Hogwarts",)) == [TokenSelection("entities", entities=("Hogwarts",))]
    tokens = TokensConfig((TokenCandidate("entities", fallback=None), TokenCandidate("entities", ("Harry",)), TokenCandidate("all")))
    assert tokens.selections(("Hogwarts",)) == [
        TokenSelection("entities", ("Hogwarts",), None), TokenSelection("entities", ("Harry",)), TokenSelection("all"),
    ]
    with pytest.raises(GuardError, match="needs at least one non-empty entity string"):
        TokensConfig((TokenCandidate("entities"),)).selections(())
    selection = TokenSelection("entities", entities=("Hogwarts",), fallback=None)
    assert TokenCandidate.of(selection).selection(()) == selection


@pytest.mark.parametrize(
    ("keyword", "value", "field", "read"),
    [
        ("name", "hp", "FitConfig.name", lambda c: c.name),
        ("seed", 3, "FitConfig.seed", lambda c: c.seed),
        ("chat", False, "FitConfig.chat", lambda c: c.chat),
        ("alpha", 0.05, "FitConfig.calibration.alpha", lambda c: c.calibration.alpha),
        ("test_fraction", 0.3, "FitConfig.classifier.test_fraction", lambda c: c.classifier.test_fraction),
        ("search", "grid", "FitConfig.search.method", lambda c: c.search.method),
        ("budget", 5, "FitConfig.search.budget", lambda c: c.search.budget),
        ("strength", 0.5, "FitConfig.search.strength", lambda c: c.search.strength),
        ("strength_range", (0.1, 1.0), "FitConfig.search.strength_range", lambda c: c.search.strength_range),
        ("objective", "answer_recall", "FitConfig.search.objective", lambda c: c.search.objective),
        ("objective_options", {"metric": "rouge_l"}, "FitConfig.search.objective_options", lambda c: c.search.objective_options),
        ("corruption", "zero_first_n", "FitConfig.corruption.name", lambda c: c.corruption.name),
        ("corruption_params", {"n_dims": 4}, "FitConfig.corruption.params", lambda c: c.corruption.params),
        ("tokens", TokenSelection("all"), "FitConfig.tokens.candidates", lambda c: c.tokens.candidates),
    ],
)
def test_each_old_keyword_maps_onto_its_field_with_a_warning(keyword, value, field, read):
    with pytest.warns(DeprecationWarning, match=rf"fit_guard\({keyword}=\.\.\.\) is deprecated .* set {field} and pass config="):
        config, unstored = apply_keywords(FitConfig(), {keyword: value}, "fit_guard")
    expected = (TokenCandidate("all"),) if keyword == "tokens" else value
    assert read(config) == expected and unstored == {}


def test_old_objective_options_are_split_into_their_fields():
    reference = [object()]
    with pytest.warns(DeprecationWarning):
        config, unstored = apply_keywords(
            FitConfig(), {"objective_options": {"target": 0.2, "chat": True, "metric": "rouge_l", "reference_items": reference}},
            "fit_guard",
        )
    assert (config.search.target, config.chat, config.search.objective_options) == (0.2, True, {"metric": "rouge_l"})
    assert unstored == {"reference_items": reference}  # not a JSON value: used for this fit, not stored


def test_old_none_values_mean_the_defaults():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config, _ = apply_keywords(FitConfig(), {"corruption_params": None, "tokens": None, "objective_options": None}, "fit_guard")
    assert config == FitConfig()


def test_an_unknown_keyword_is_a_clear_error():
    with pytest.raises(InputError, match=r"fit_guard\(\) got an unknown keyword argument 'budjet'; did you mean 'budget'\?"):
        apply_keywords(FitConfig(), {"budjet": 3}, "fit_guard")
    with pytest.raises(InputError, match=r"fit_classifier\(\) got an unknown keyword argument 'budget'"):
        apply_keywords(FitConfig(), {"budget": 3}, "fit_classifier", ("alpha", "test_fraction", "seed"))


def test_demo_config_bisects_answer_recall_within_its_budget():
    from eco_unlearn.demo import demo_fit_config

    default, quick = demo_fit_config(), demo_fit_config(seed=2, budget=4)
    assert (default.name, default.search.method, default.search.objective, default.search.budget) == (
        "harry-potter", "bisection", "answer_recall", 30)
    assert (quick.seed, quick.search.budget) == (2, 4)
    with pytest.raises(SearchError, match="at least 2"):
        demo_fit_config(budget=1)
