"""Tests of ConstantClassifier, AnyOfClassifier and saving classifiers on their own or inside a guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eco_unlearn import CorruptionSpec, Guard, GuardError, KeywordClassifier, Target
from eco_unlearn.classifier import (
    CLASSIFIERS,
    AnyOfClassifier,
    ConstantClassifier,
    PromptClassifier,
    load_classifier,
    save_classifier,
)

TEXTS = [
    "Tell me about Hogwarts.",
    "Who is Harry Potter?",
    "What is the capital of France?",
    "harry potter and the hogwarts express",
    "A lazy dog sleeps in the sun all day long, for hours and hours.",
    "",
]


def test_registered_kinds():
    assert CLASSIFIERS["constant"] is ConstantClassifier
    assert CLASSIFIERS["any_of"] is AnyOfClassifier
    assert isinstance(AnyOfClassifier([ConstantClassifier()]), PromptClassifier)


# -------------------------------------------------------------------------------------- constant


@pytest.mark.parametrize("score", [0.0, 0.25, 1.0, 1])
def test_constant_classifier_scores(score):
    scores = ConstantClassifier(score).predict_proba(TEXTS)
    assert scores.dtype == np.float64 and scores.shape == (len(TEXTS),)
    assert scores.tolist() == [float(score)] * len(TEXTS)
    assert ConstantClassifier(score).predict_proba([]).shape == (0,)


def test_constant_classifier_default_is_one():
    assert ConstantClassifier().predict_proba(["x"]).tolist() == [1.0]


@pytest.mark.parametrize("score", [-0.1, 1.01, float("nan"), float("inf"), "0.5", None])
def test_constant_classifier_rejects_scores_outside_0_1(score):
    with pytest.raises(GuardError, match=r"\[0, 1\]"):
        ConstantClassifier(score)


def test_constant_classifier_config_round_trip():
    clf = ConstantClassifier(0.3)
    assert clf.to_config() == {"score": 0.3} and clf.tensors() == {}
    assert ConstantClassifier.from_config(clf.to_config(), {}).score == 0.3


# ------------------------------------------------------------------------------------------ any-of


def test_any_of_is_the_max_of_its_members():
    keyword = KeywordClassifier(["Hogwarts", "Harry Potter"])
    constant = ConstantClassifier(0.3)
    combined = AnyOfClassifier([keyword, constant])
    expected = np.maximum(keyword.predict_proba(TEXTS), constant.predict_proba(TEXTS))
    assert combined.predict_proba(TEXTS).tolist() == expected.tolist() == [1.0, 1.0, 0.3, 1.0, 0.3, 0.3]


def test_any_of_with_a_weighted_member(length_classifier_kind):
    length = length_classifier_kind(torch.tensor(0.05), torch.tensor(-2.0))  # longer text, higher score
    keyword = KeywordClassifier(["France"])
    combined = AnyOfClassifier([keyword, length])
    scores = combined.predict_proba(TEXTS)
    np.testing.assert_allclose(scores, np.maximum(keyword.predict_proba(TEXTS), length.predict_proba(TEXTS)))
    assert scores[2] == 1.0  # the keyword wins
    assert 0.0 < scores[0] < scores[4] < 1.0  # the length classifier decides elsewhere


def test_any_of_single_member_is_that_member():
    keyword = KeywordClassifier(["Potter"])
    assert AnyOfClassifier([keyword]).predict_proba(TEXTS).tolist() == keyword.predict_proba(TEXTS).tolist()


def test_any_of_needs_members():
    with pytest.raises(GuardError, match="member"):
        AnyOfClassifier([])


def test_any_of_config_and_prefixed_tensors(length_classifier_kind):
    length = length_classifier_kind(torch.tensor(0.5), torch.tensor(-1.0))
    combined = AnyOfClassifier([KeywordClassifier(["Hogwarts"]), length, ConstantClassifier(0.1)])
    config = combined.to_config()
    assert [m["kind"] for m in config["members"]] == ["keyword", "test-length", "constant"]
    assert config["members"][2]["config"] == {"score": 0.1}
    json.dumps(config)
    tensors = combined.tensors()
    assert set(tensors) == {"1.w", "1.b"}
    rebuilt = AnyOfClassifier.from_config(config, tensors)
    assert [type(m) for m in rebuilt.members] == [KeywordClassifier, length_classifier_kind, ConstantClassifier]
    np.testing.assert_array_equal(rebuilt.predict_proba(TEXTS), combined.predict_proba(TEXTS))


def test_any_of_fit_fits_the_members_that_can_be_fitted():
    calls = []

    class Fittable(ConstantClassifier):
        def fit(self, forget, retain, *, extra_negatives=(), **kwargs):
            calls.append((list(forget), list(retain), list(extra_negatives), kwargs))
            self.score = 0.7
            return self

    member = Fittable(0.0)
    combined = AnyOfClassifier([KeywordClassifier(["Hogwarts"]), member])
    assert combined.fit(["f1", "f2"], ["r1"], extra_negatives=["g1"], epochs=3) is combined
    assert calls == [(["f1", "f2"], ["r1"], ["g1"], {"epochs": 3})]
    assert combined.predict_proba(["Hogwarts", "Paris"]).tolist() == [1.0, 0.7]


# ------------------------------------------------------------------------------ save and load alone


def test_save_load_round_trip_any_of_keyword_constant(tmp_path):
    combined = AnyOfClassifier([KeywordClassifier(["Hogwarts", "Harry Potter"], patterns=[r"\bwizard(s)?\b"]), ConstantClassifier(0.2)])
    path = save_classifier(combined, tmp_path / "clf")
    assert path == tmp_path / "clf"
    assert (path / "classifier.json").is_file()
    assert not (path / "weights.safetensors").exists()  # no member has weights
    loaded = load_classifier(path)
    assert isinstance(loaded, AnyOfClassifier)
    assert [type(m) for m in loaded.members] == [KeywordClassifier, ConstantClassifier]
    texts = TEXTS + ["Two wizards met", "a wizardry show"]
    np.testing.assert_array_equal(loaded.predict_proba(texts), combined.predict_proba(texts))
    assert loaded.predict_proba(texts).tolist() == [1.0, 1.0, 0.2, 1.0, 0.2, 0.2, 1.0, 0.2]
    manifest = json.loads((path / "classifier.json").read_text())
    assert manifest["kind"] == "any_of" and manifest["weights"] is False


def test_save_load_round_trip_with_weights_nested(tmp_path, length_classifier_kind):
    inner = AnyOfClassifier([ConstantClassifier(0.05), length_classifier_kind(torch.tensor(0.1), torch.tensor(-3.0))])
    outer = AnyOfClassifier([KeywordClassifier(["France"]), inner])
    assert set(outer.tensors()) == {"1.1.w", "1.1.b"}
    path = save_classifier(outer, tmp_path / "nested")
    assert (path / "weights.safetensors").is_file()
    loaded = load_classifier(path)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), outer.predict_proba(TEXTS))
    assert isinstance(loaded.members[1], AnyOfClassifier)
    assert float(loaded.members[1].members[1].w) == pytest.approx(0.1)


def test_save_into_a_foreign_non_empty_folder_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(GuardError, match="other files"):
        save_classifier(ConstantClassifier(0.5), folder)
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left behind


def test_save_onto_an_existing_file_is_refused(tmp_path):
    """Like Guard.save, saving a classifier where a file stands must refuse and leave the file alone."""
    target = tmp_path / "notes.txt"
    target.write_text("precious", encoding="utf-8")
    with pytest.raises(GuardError):
        save_classifier(ConstantClassifier(0.5), target)
    assert target.is_file() and target.read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_save_into_an_empty_folder_and_over_a_saved_classifier(tmp_path):
    folder = tmp_path / "clf"
    folder.mkdir()
    save_classifier(ConstantClassifier(0.5), folder)
    assert load_classifier(folder).predict_proba(["x"]).tolist() == [0.5]
    save_classifier(KeywordClassifier(["x"]), folder)  # replacing an earlier classifier is allowed
    loaded = load_classifier(folder)
    assert isinstance(loaded, KeywordClassifier) and loaded.predict_proba(["x", "y"]).tolist() == [1.0, 0.0]


def test_load_errors(tmp_path):
    with pytest.raises(GuardError, match="classifier.json"):
        load_classifier(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "classifier.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(GuardError, match="malformed"):
        load_classifier(tmp_path / "bad")
    (tmp_path / "nokind").mkdir()
    (tmp_path / "nokind" / "classifier.json").write_text('{"config": {}}', encoding="utf-8")
    with pytest.raises(GuardError, match="malformed"):
        load_classifier(tmp_path / "nokind")
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "classifier.json").write_text('{"kind": "crystal-ball", "config": {}}', encoding="utf-8")
    with pytest.raises(GuardError, match="crystal-ball"):
        load_classifier(tmp_path / "unknown")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "classifier.json").write_text('{"kind": "constant", "config": {}, "weights": true}', encoding="utf-8")
    with pytest.raises(GuardError, match="missing"):
        load_classifier(tmp_path / "noweights")
    (tmp_path / "badmember").mkdir()
    (tmp_path / "badmember" / "classifier.json").write_text(
        json.dumps({"kind": "any_of", "config": {"members": [{"kind": "constant", "config": {"score": 7}}]}}), encoding="utf-8"
    )
    with pytest.raises(GuardError, match=r"\[0, 1\]"):
        load_classifier(tmp_path / "badmember")


# ----------------------------------------------------------------------------------- inside a guard


def make_any_of_guard(model, **kwargs):
    from eco_unlearn import fingerprint

    hp = Target(
        "hp",
        AnyOfClassifier([KeywordClassifier(["Harry Potter", "Hogwarts"]), ConstantClassifier(0.2)]),
        corruption=CorruptionSpec("gaussian_first_n", 1.5),
        threshold=0.5,
    )
    france = Target("france", AnyOfClassifier([KeywordClassifier(["France"]), ConstantClassifier(0.4)]), corruption=CorruptionSpec("gaussian_first_n", 0.5), threshold=0.4)
    return Guard([hp, france], model_fingerprint=fingerprint(model), seed=7, **kwargs)


def test_guard_with_any_of_saves_loads_and_decides_identically(tmp_path, model):
    guard = make_any_of_guard(model)
    path = guard.save(tmp_path / "guard")
    loaded = Guard.load(path)
    assert isinstance(loaded.target("hp").classifier, AnyOfClassifier)
    assert loaded.to_dict() == json.loads(json.dumps(guard.to_dict()))
    texts = TEXTS + ["France and Hogwarts", "Paris"]
    before, after = guard.decide(texts), loaded.decide(texts)
    assert [d.to_dict() for d in after] == [d.to_dict() for d in before]
    flagged = [d.targets for d in after]
    assert flagged[0] == ["hp", "france"]  # 0.4 >= the france threshold 0.4
    assert after[0].scores == {"hp": 1.0, "france": 0.4}
    assert flagged[2] == ["france"] and after[2].scores["france"] == 1.0


def test_guard_with_weighted_any_of_saves_loads(tmp_path, model, length_classifier_kind):
    length = length_classifier_kind(torch.tensor(0.08), torch.tensor(-3.0))
    target = Target("len", AnyOfClassifier([KeywordClassifier(["Hogwarts"]), length]), corruption=CorruptionSpec("gaussian_first_n", 1.0), threshold=0.6)
    guard = Guard([target], seed=1)
    path = guard.save(tmp_path / "guard")
    assert (path / "classifiers" / "0.safetensors").is_file()
    loaded = Guard.load(path)
    assert [d.to_dict() for d in loaded.decide(TEXTS)] == [d.to_dict() for d in guard.decide(TEXTS)]
    assert {d.flagged for d in guard.decide(TEXTS)} == {True, False}
