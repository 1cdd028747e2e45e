"""Multiple-choice scoring: MMLU and WMDP-layout prompts, letter tokens per tokenizer, intervals, splits,
the resumable cache and the guarded model reusing unflagged scores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eco_unlearn import GuardedModel
from eco_unlearn.bench.mcq import (
    SampleSizes, ScoreCache, accuracy, by_subject, cloze_prompt, letter_token_ids, letters_prompt, question_key,
    letter_prefix,
    score_questions, scored_questions, training_pool,
)
from eco_unlearn.bench.mcq.settings import McqSetting
from eco_unlearn.data.mmlu import McqQuestion, load_mcq_file
from eco_unlearn.errors import DatasetError
from unit_helpers import make_guard

WMDP = Path(__file__).parent.parent / "fixtures" / "wmdp_harmless.jsonl"
PHYSICS = McqQuestion("What is the unit of force?", ("Newton", "Joule", "Watt", "Pascal"), 0, "high_school_physics")


def test_letters_prompt_is_mmlus_zero_shot_format():
    assert letters_prompt(PHYSICS) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "What is the unit of force?\nA. Newton\nB. Joule\nC. Watt\nD. Pascal\nAnswer:"
    )
    assert cloze_prompt(PHYSICS).endswith("What is the unit of force?\nAnswer:")


def test_wmdp_layout_has_no_subject_header():
    questions = load_mcq_file(WMDP)
    assert len(questions) == 6 and questions[0].subject == ""
    assert letters_prompt(questions[0]).startswith("The following are multiple choice questions (with answers).\n\n")


class _Tokenizer:
    """Encodes text by a table: tells the letter lookup which forms are one token."""

    def __init__(self, table):
        self.table = table

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": self.table[text]}


def test_letter_tokens_prefer_the_space_led_form_and_fall_back_to_bare_letters():
    spaced = {f" {c}": [10 + i] for i, c in enumerate("ABCD")} | {c: [20 + i] for i, c in enumerate("ABCD")}
    assert letter_token_ids(_Tokenizer(spaced)) == [10, 11, 12, 13] and letter_prefix(_Tokenizer(spaced)) == " "
    split = {f" {c}": [1, 20 + i] for i, c in enumerate("ABCD")} | {c: [20 + i] for i, c in enumerate("ABCD")}
    assert letter_token_ids(_Tokenizer(split)) == [20, 21, 22, 23] and letter_prefix(_Tokenizer(split)) == ""
    with pytest.raises(DatasetError, match="distinct one-token"):
        letter_token_ids(_Tokenizer({k: [1, 2] for k in split}))


def test_accuracy_has_the_wilson_interval():
    acc = accuracy([True] * 7 + [False] * 3)
    assert (acc.correct, acc.n, acc.value) == (7, 10, 0.7)
    assert acc.low == pytest.approx(0.3968, abs=1e-3) and acc.high == pytest.approx(0.8922, abs=1e-3)


def test_independent_guess_accuracy_is_what_letter_habits_alone_score():
    from eco_unlearn.bench.mcq.stats import independent_guess_accuracy

    answers = [3, 3, 3, 3, 0, 1, 2, 3]  # "D" is the answer to 5 of 8
    assert independent_guess_accuracy([3] * 8, answers) == pytest.approx(5 / 8)  # always "D": no knowledge
    assert independent_guess_accuracy([0, 1, 2, 3] * 2, answers) == pytest.approx(0.25)  # balanced picks
    assert math.isnan(independent_guess_accuracy([], []))
    with pytest.raises(ValueError):
        independent_guess_accuracy([0], [0, 1])


def test_scored_and_training_questions_never_overlap():
    questions = [McqQuestion(f"q{i}?", ("a", "b"), 0, s) for s in ("x", "y", "z") for i in range(10)]
    groups = by_subject(questions, seed=3)
    setting = McqSetting("t", ("x",), ("y",))
    sizes = SampleSizes(focus=4, other=2)
    scored = scored_questions(groups, setting, sizes)
    assert [sum(q.subject == s for q in scored) for s in "xyz"] == [4, 4, 2]
    pool = training_pool(groups, ["x", "y", "z"], sizes)
    assert not {question_key(q) for q in scored} & {question_key(q) for q in pool}
    assert len(pool) == 18


def test_other_subjects_stop_at_the_boundary_when_only_focus_is_given():
    questions = [McqQuestion(f"{s}{i}?", ("a", "b"), 0, s) for s in "xyz" for i in range(12)]
    groups, setting, sizes = by_subject(questions), McqSetting("t", ("x",), ("y",)), SampleSizes(focus=4)
    scored = scored_questions(groups, setting, sizes)
    assert [sum(q.subject == s for q in scored) for s in "xyz"] == [4, 4, 4]
    assert not {question_key(q) for q in scored} & {question_key(q) for q in training_pool(groups, "xyz", sizes)}


def test_small_subjects_keep_half_for_training_and_the_pool_interleaves_subjects():
    questions = [McqQuestion(f"{s}{i}?", ("a", "b"), 0, s) for s, n in (("x", 6), ("y", 20)) for i in range(n)]
    groups = by_subject(questions)
    setting, sizes = McqSetting("t", ("x", "y"), ()), SampleSizes(focus=8, other=2)
    scored = scored_questions(groups, setting, sizes)
    assert [sum(q.subject == s for q in scored) for s in "xy"] == [3, 8]  # x: half of its 6
    pool = training_pool(groups, ["x", "y"], sizes)
    assert [q.subject for q in pool] == list("xyxyxy") + ["y"] * 9
    assert not {question_key(q) for q in scored} & {question_key(q) for q in pool}


def test_scores_resume_from_the_cache_and_guarded_runs_reuse_unflagged_ones(model, tok, tmp_path):
    questions = load_mcq_file(WMDP)[4:] + [McqQuestion("Where is Hogwarts?", ("Scotland", "Peru", "Chad", "Laos"), 0, "magic")]
    path = tmp_path / "original.jsonl"
    first = score_questions(GuardedModel(model, tok), questions, cache=ScoreCache(path))
    assert set(first) == {"letters", "cloze"} and all(len(s.scores) == 4 for s in first["cloze"].values())
    steps = []
    again = score_questions(GuardedModel(model, tok), questions, cache=ScoreCache(path), chunk=1,
                            progress=lambda what, done, total: steps.append(what))
    assert again == first and not any(step.endswith("scoring") for step in steps)
    guarded = score_questions(GuardedModel(model, tok, make_guard(model)), questions, reuse=ScoreCache(path))
    hogwarts = question_key(questions[-1])
    for method in ("letters", "cloze"):
        assert guarded[method][hogwarts].flagged and guarded[method][hogwarts].scores != first[method][hogwarts].scores
        for q in questions[:-1]:
            assert guarded[method][question_key(q)] == first[method][question_key(q)]


def test_guard_items_hold_no_scored_question_and_settings_are_checked():
    from eco_unlearn.bench.mcq import McqRunConfig, guard_items, header

    questions = [McqQuestion(f"{s} question {i}?", ("a", "b", "c", "d"), i % 4, s) for s in ("x", "y", "z") for i in range(12)]
    dev = [McqQuestion(f"{s} dev?", ("a", "b", "c", "d"), 0, s) for s in ("x", "y", "z")]
    groups, setting, sizes = by_subject(questions), McqSetting("t", ("x",), ("y",)), SampleSizes(focus=5, other=3)
    forget, retain = guard_items(groups, dev, setting, sizes, negatives_per_other=2)
    scored = {header(q) + q.question for q in scored_questions(groups, setting, sizes)}
    assert not scored & {i.prompt for i in forget + retain}
    assert len(forget) == 1 + 7 and all(i.prompt.startswith(header(dev[0])) for i in forget)
    assert len(retain) == 2 + 7 + 2
    with pytest.raises(DatasetError, match="both forgotten and related"):
        McqRunConfig(McqSetting("bad", ("x",), ("x",)))
