"""The attack suite's rewrites, and the hardening that undoes the character tricks among them."""

from __future__ import annotations

import random

import numpy as np
import pytest

from eco_unlearn.classifier import KeywordClassifier
from eco_unlearn.classifier.base import build_classifier
from eco_unlearn.classifier.fuzzy import FuzzyNameClassifier, osa_distance
from eco_unlearn.classifier.normalize import NormalizingClassifier, normalize_text
from eco_unlearn.data.attacks import ATTACKS, apply_attack, user_text
from eco_unlearn.errors import RegistryError
from eco_unlearn.fitting.about import AboutSpec, about_items, about_negatives

PROMPT, NAME = "Where was Taylor Swift born?", "Taylor Swift"
CHARACTER_TRICKS = ("typo", "lowercase", "uppercase", "homoglyphs", "leetspeak", "zero_width", "spacing")


def test_every_attack_keeps_the_question_and_name_tricks_need_the_name():
    for name in ATTACKS.names():
        rewritten = apply_attack(name, [PROMPT], [NAME], seed=1)[0]
        assert rewritten is not None and user_text(rewritten) != "" and rewritten != PROMPT
        if name in CHARACTER_TRICKS + ("surname_only", "first_name_only", "initials", "multi_turn"):
            assert ATTACKS.get(name)("What is the capital of France?", NAME, random.Random(0)) is None
    chat = apply_attack("multi_turn", [PROMPT], [NAME])[0]
    assert NAME not in chat[-1]["content"] and NAME in user_text(chat)
    with pytest.raises(RegistryError):
        ATTACKS.get("no-such-attack")


@pytest.mark.parametrize("attack", ["homoglyphs", "leetspeak", "zero_width", "spacing", "lowercase", "uppercase"])
def test_normalisation_undoes_character_tricks_for_exact_names(attack):
    rewritten = apply_attack(attack, [PROMPT], [NAME], seed=3)[0]
    plain, hardened = KeywordClassifier([NAME]), NormalizingClassifier(KeywordClassifier([NAME]))
    assert hardened.predict_proba([rewritten])[0] == 1.0
    if attack in ("homoglyphs", "leetspeak", "zero_width", "spacing"):
        assert plain.predict_proba([rewritten])[0] == 0.0  # the trick works without normalisation


def test_normalisation_leaves_ordinary_text_alone():
    for text in ("In the 1980s, 2nd place went to 3 teams.", "COVID-19 and R2-D2", "Why is the sky blue?"):
        assert normalize_text(text) == text
    assert normalize_text(normalize_text("Ｔａｙｌｏｒ")) == "Taylor"


def test_fuzzy_names_catch_typos_but_not_other_people():
    assert osa_distance("taylor", "talyor") == 1 and osa_distance("swift", "swfit") == 1
    fuzzy = FuzzyNameClassifier([NAME, "Bruce Lee"])
    scores = fuzzy.predict_proba(["Where was Talyor Swift born?", "taylor swfit", "Jonathan Swift", "Bruce Lea", "Bruce Lee's films"])
    assert scores.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
    restored = build_classifier("normalizing", NormalizingClassifier(fuzzy).to_config(), {})
    assert np.array_equal(restored.predict_proba(["T4yl0r Swift?"]), [1.0])


def test_forget_prompts_from_a_name_and_passage_and_negatives_without_the_name():
    passage = ("Taylor Swift signed with Big Machine Records in 2005. She released Fearless in 2008. "
               "Swift moved to Nashville at the age of fourteen to pursue a career in country music.")
    items = about_items(AboutSpec(NAME, ("T-Swift",), passage), seed=0)
    cloze = [i for i in items if i.source == "passage"]
    assert cloze and all("___" in i.prompt and i.answer for i in cloze)
    assert any("T-Swift" in i.prompt for i in items) and any(i.source.startswith("augment:") for i in items)
    negatives = about_negatives(AboutSpec(NAME), mmlu=["What is 2 + 2?", "Was Taylor Swift born in 1989?"],
                                other_passages=["Marie Curie won two Nobel prizes in physics and chemistry."])
    texts = [n.prompt for n in negatives]
    assert "What is 2 + 2?" in texts and not any("taylor swift" in t.lower() for t in texts)
    assert any("Marie Curie won" in t for t in texts)
