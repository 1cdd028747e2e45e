"""Fact-swapped perturbed answers: which facts are found, which are swapped, and what they are swapped for."""

from __future__ import annotations

import pytest

from eco_unlearn.data.items import PromptItem
from eco_unlearn.data.perturb import fact_spans, perturb_answers

BORN = PromptItem("When and where was Siriporn Nakharin born?", "Siriporn Nakharin was born on October 25, 1931, in Bangkok, Thailand.")
TITLE = PromptItem("What is Jun-Suk Hyun's first book?", 'Jun-Suk Hyun\u2019s first book is "The Symbiosis of Spaces," written in 1990.')
OTHER = PromptItem("When and where was Jun-Suk Hyun born?", "Jun-Suk Hyun was born on March 3, 1968, in Seoul, Korea.")
AWARD = PromptItem("Which award did Siriporn Nakharin win?", 'She won the "Golden Lotus Literary Prize" in 2001.')
ITEMS = [BORN, TITLE, OTHER, AWARD]


def spans(text: str) -> list[tuple[str, str]]:
    return [(text[s:e], kind) for s, e, kind in fact_spans(text)]


def test_fact_spans_find_dates_titles_numbers_and_names_by_word_count():
    assert spans(BORN.answer) == [
        ("Siriporn Nakharin", "name2"), ("October 25, 1931", "date"), ("Bangkok", "name1"), ("Thailand", "name1"),
    ]
    # the quotes and the punctuation inside them stay; the possessive is not part of the name
    assert spans(TITLE.answer) == [("Jun-Suk Hyun", "name2"), ("The Symbiosis of Spaces", "quoted"), ("1990", "number")]
    # a capitalised word that only starts the sentence is no name
    assert spans("Themes of love are common in Seoul.") == [("Seoul", "name1")]
    assert spans("Critics praised Van der Berg.") == [("Van der Berg", "name3")]
    assert spans("no facts here at all") == []


def test_each_perturbed_answer_swaps_one_fact_the_question_does_not_name():
    out = perturb_answers(ITEMS, n=4, seed=1)
    born = out[0]
    assert born.paraphrased_answer == BORN.answer and len(born.perturbed_answers) == 4
    for text in born.perturbed_answers:
        assert text != BORN.answer and text.startswith("Siriporn Nakharin was born on")  # the question's name stays
        kept = [f for f, _ in spans(BORN.answer) if f in text]
        assert len(kept) == 3  # exactly one of the four facts changed
    swapped = {f for t in born.perturbed_answers for f, _ in spans(t)} - {f for f, _ in spans(BORN.answer)}
    assert swapped <= {"March 3, 1968", "Seoul", "Korea"}  # a fact of the same kind from another answer


def test_items_without_swappable_facts_or_with_perturbed_answers_are_kept_as_they_are():
    given = PromptItem("Q?", "Seoul.", paraphrased_answer="In Seoul.", perturbed_answers=("In Rome.",))
    bare = PromptItem("Who is Ron?", "Ron is a writer.")
    out = perturb_answers([given, bare, BORN, OTHER], n=2)
    assert out[0] is given and out[1] is bare
    assert out[1].perturbed_answers == () and len(out[2].perturbed_answers) == 2
    # a pool adds facts to swap in without being perturbed itself
    alone = perturb_answers([BORN], n=3, pool=[OTHER])
    assert len(alone) == 1 and len(alone[0].perturbed_answers) == 3


def test_rank_keeps_the_most_plausible_swaps():
    seen = []

    def rank(pairs):
        seen.extend(pairs)
        return [-len(answer) + (100 if "Seoul" in answer else 0) for _, answer in pairs]

    out = perturb_answers(ITEMS, n=2, rank=rank, candidates=50)
    assert {prompt for prompt, _ in seen} == {i.prompt for i in ITEMS}  # each candidate is scored with its question
    born = out[0].perturbed_answers
    assert len(born) == 2 and "Seoul" in born[0]  # the highest score comes first
    candidates = [a for p, a in seen if p == BORN.prompt]
    scores = sorted((-len(a) + (100 if "Seoul" in a else 0) for a in candidates), reverse=True)
    assert [-len(a) + (100 if "Seoul" in a else 0) for a in born] == scores[:2]


def test_perturb_answers_rejects_bad_counts():
    with pytest.raises(ValueError, match="n >= 1"):
        perturb_answers(ITEMS, n=0)
    with pytest.raises(ValueError, match="candidates >= 1"):
        perturb_answers(ITEMS, candidates=0)
