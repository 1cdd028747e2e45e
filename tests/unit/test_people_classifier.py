"""The many-people guard classifier: the name index, partial names in context, the lexical classifier,
signature phrases, aliases and nameless prompts from a passage, and the benchmark's tables."""

from __future__ import annotations

import numpy as np
import pytest

from eco_unlearn.bench.rwku.classifier import ClassifierRun
from eco_unlearn.bench.rwku.latency import LatencyCurve, ms_per_prompt
from eco_unlearn.bench.rwku.markdown import attacks_markdown, latency_markdown
from eco_unlearn.classifier import LexicalClassifier, PeopleClassifier, hardened_people_classifier
from eco_unlearn.classifier.augment import nameless_prompts, passage_aliases
from eco_unlearn.classifier.base import build_classifier
from eco_unlearn.classifier.names import NameIndex, name_variants
from eco_unlearn.classifier.people import blanked, partial_name_negatives
from eco_unlearn.classifier.signature import SignatureIndex, asks_for_person, mine_signatures, phrases
from eco_unlearn.data.attacks import apply_attack, user_text
from eco_unlearn.errors import ClassifierError, GuardError
from eco_unlearn.fitting.about import about_classifier

PEOPLE = [("Taylor Swift", "Taylor Alison Swift"), "Bruce Lee", "John D. Rockefeller", "Prince Harry, Duke of Sussex"]


def kinds(index: NameIndex, text: str) -> set[tuple[int, str]]:
    return {(h.person, h.kind) for h in index.hits(text)}


def test_full_names_with_typos_middle_names_initials_and_titles():
    index = NameIndex(PEOPLE)
    assert kinds(index, "Where was Talyor Swift born?") == {(0, "full")}
    assert kinds(index, "Taylor Alison Swift was born in 1989") == {(0, "full")}
    assert kinds(index, "John Davison Rockefeller Sr. founded it") == {(2, "full")}
    assert kinds(index, "Is Prince Harry rich?") == {(3, "full")}
    assert kinds(index, "bruce lee") == {(1, "full")} and kinds(index, "Bruce Lea") == set()
    assert kinds(index, "B. Lee founded Jeet Kune Do") == {(1, "initials")}
    assert kinds(index, "Jonathan Swift wrote Gulliver's Travels") == set()
    assert name_variants("Paul Davis (singer)") == ("Paul Davis (singer)", "Paul Davis")
    with pytest.raises(GuardError):
        NameIndex([" "])


@pytest.mark.parametrize("text", [
    "Brandon Lee starred in The Crow.", "Robert E. Lee surrendered in 1865.", "___ Swift is a singer.",
    "The TV series 'Taylor' ended.", "Donny & Taylor hosted a show.", "The Rockefeller family is rich.",
    "the Rockefellers were powerful", "a swift reply", "Taylor Hawkins played drums.",
])
def test_partial_names_in_the_context_of_someone_else_are_dropped(text):
    assert kinds(NameIndex(PEOPLE), text) == set()


def test_partial_names_in_context_are_kept_and_marked():
    index = NameIndex(PEOPLE)
    assert kinds(index, "What did Swift sing at the Eras Tour?") == {(0, "surname")}
    assert kinds(index, "Where did Rockefeller live?") == {(2, "surname")}
    assert kinds(index, "Bruce founded a school.") == {(1, "first")}
    people = PeopleClassifier(PEOPLE)
    assert people.view("Who is Taylor Swift?") == (True, "Who is ?")
    assert people.view("What did Swift sing?") == (False, "What did zzsurnamezz sing?")
    assert people.view("Who played Jack Ryan?")[1].endswith("zzothernamezz")


def test_lexical_classifier_learns_topics_and_round_trips():
    positives = ["martial arts films in Hong Kong", "the philosophy of Jeet Kune Do", "kung fu films and fights"] * 3
    negatives = ["the capital of France is Paris", "how to bake bread", "prime numbers and their sums"] * 3
    lexical = LexicalClassifier(bits=12).fit(positives, negatives)
    scores = lexical.predict_proba(["Hong Kong martial arts", "bread and Paris"])
    assert scores[0] > 0.5 > scores[1]
    restored = build_classifier("lexical", lexical.to_config(), lexical.tensors())
    assert np.allclose(restored.predict_proba(["Hong Kong martial arts"]), scores[:1])
    with pytest.raises(ClassifierError):
        LexicalClassifier().predict_proba(["x"])
    with pytest.raises(ClassifierError):
        LexicalClassifier(bits=40)
    with pytest.raises(GuardError):
        build_classifier("lexical", {"bits": 12}, {})


def test_signature_phrases_and_questions_for_a_person():
    assert asks_for_person("Who is the founder of Jeet Kune Do?")
    assert asks_for_person("Could you tell me who wrote The Hunt for Red October?")
    assert asks_for_person("What year did the star of 'Enter the Dragon' pass away?")
    assert not asks_for_person("Plan a dinner for six people, one of whom is vegan.")
    assert {"jeet kune do", "enter the dragon"} <= phrases("Lee founded Jeet Kune Do and starred in 'Enter the Dragon'.")
    mined = mine_signatures(["He founded Jeet Kune Do.", "Jeet Kune Do is a philosophy. Bruce Lee taught it."],
                            ["Hong Kong is a city."], exclude=["Bruce Lee"])
    assert mined == ["jeet kune do"]
    assert SignatureIndex(mined).find("Who founded jeet kune do?") == "jeet kune do"
    assert SignatureIndex(mined).find("Who founded Wing Chun?") is None


def test_aliases_and_nameless_prompts_from_a_passage():
    passage = ("Curtis James Jackson III (born July 6, 1975), known professionally as 50 Cent, is an American rapper. "
               "Jackson released Get Rich or Die Tryin' in 2003. He founded G-Unit Records with his friends.")
    assert passage_aliases(passage, "50 Cent") == ("Curtis James Jackson III",)
    assert passage_aliases("Bruce Lee (born Lee Jun-fan; November 27, 1940) was an actor.", "Bruce Lee") == ("Lee Jun-fan",)
    # an intro line before the encyclopaedia text (RWKU's people file): each line's opening is read, later lines
    # only for the person's own names
    intro = ("R. Kelly is an American singer.\nSusan Kelly (born 1970) is his cousin.\n"
             "Robert Sylvester Kelly (born January 8, 1967) is an American singer.")
    assert passage_aliases(intro, "R. Kelly") == ("Robert Sylvester Kelly",)
    prompts = nameless_prompts(passage, ["50 Cent", "Curtis James Jackson III"], seed=0)
    assert len(prompts) == 3 and not any("Jackson" in p or "50 Cent" in p for p in prompts)
    assert any("G-Unit Records" in p for p in prompts)


def test_hard_negatives_from_names_and_cloze_negatives():
    index = NameIndex(["Taylor Swift"])
    negatives = partial_name_negatives(index)
    assert any("Taylor has three apples" in n for n in negatives) and any("Swift Street" in n for n in negatives)
    assert blanked(["Marie Curie won two prizes in 1911.", "Why is the sky blue?"]) == ["Marie Curie won two prizes in ___."]


def test_people_classifier_under_attack_and_saved():
    forget = [f"{q} {n}?" for n in ("Taylor Swift", "Bruce Lee") for q in ("Who is", "Tell me about", "Where was born")]
    forget += ["Who is the person who released the album Fearless and toured the Eras Tour?",
               "The Eras Tour and the album Fearless made this person famous."]
    negatives = ["What is the capital of France?", "How do I bake bread?", "Explain photosynthesis.",
                 "Who wrote Hamlet?", "Who painted the Mona Lisa?", "What is 2 + 2?"] * 3
    guard = hardened_people_classifier([("Taylor Swift",), "Bruce Lee"]).fit(forget, [], extra_negatives=negatives)
    prompt = "Where was Taylor Swift born?"
    for attack in ("typo", "homoglyphs", "leetspeak", "zero_width", "spacing", "initials", "multi_turn", "lowercase"):
        rewritten = user_text(apply_attack(attack, [prompt], ["Taylor Swift"], seed=1)[0])
        assert guard.predict_proba([rewritten])[0] == 1.0, attack
    assert guard.predict_proba(["Who toured the Eras Tour?"])[0] == 1.0  # a reverse query
    assert guard.predict_proba(["What is the capital of France?"])[0] < 0.5
    restored = build_classifier("normalizing", guard.to_config(), guard.tensors())
    texts = ["T4yl0r Swift?", "Who toured the Eras Tour?", "How do I bake bread?"]
    assert np.allclose(restored.predict_proba(texts), guard.predict_proba(texts))
    assert about_classifier(["Taylor Swift"]).inner.names == ["Taylor Swift"]


def test_benchmark_tables_and_timing():
    run = ClassifierRun("hardened", 2, 0.4, {"level1": 0.0, "attack/typo": 0.1}, {"level1": 10, "attack/typo": 10},
                        {"mmlu": 0.01, "neighbor": 0.02}, {"mmlu": 100, "neighbor": 50}, {}, 0.0005, 1.0)
    table = attacks_markdown([run])
    assert "| level1 | 0.0% (10) |" in table and "| attack/typo | 10.0% (10) |" in table and "| 2000 |" in table
    curve = LatencyCurve([1, 10], [4.0, 5.0], [0.2, 0.25], 64, 32, 1, [1.0, 1.0, 1.0])
    assert curve.speedup == [20.0, 20.0] and "| 10 | 5.00 | 200 | 0.250 | 4000 | 20x |" in latency_markdown(curve)
    assert ms_per_prompt(lambda batch: np.zeros(len(batch)), ["a"] * 64, batch=32, repeats=1) >= 0
