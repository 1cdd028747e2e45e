"""Tests of eco_unlearn.fitting.objectives on the tiny random Llama (no real model is loaded).

Values are checked against hand computations through GuardedModel.score / next_token_logits /
generate, which other unit tests cover.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eco_unlearn import CorruptionSpec, Guard, GuardedModel, Target, fingerprint
from eco_unlearn.classifier import ConstantClassifier
from eco_unlearn.data.items import PromptItem
from eco_unlearn.metrics import normalize_answer
from eco_unlearn.fitting.objectives import (
    OBJECTIVES,
    AnswerRecall,
    ChoiceAccuracy,
    MatchReference,
    Objective,
    ObjectiveError,
    make_objective,
    register_objective,
)

QUESTIONS = [
    ("Who is Harry Potter?", ["a wizard", "a dog", "a city"]),
    ("What is the capital of France?", ["Paris", "Rome"]),
    ("Where is the Eiffel tower?", ["in Paris", "in Scotland", "in the sun", "on the mat"]),
    ("What does the lazy dog do?", ["sleeps", "reads books"]),
    ("Tell me about Hogwarts.", ["a school of magic", "a fox", "a letter"]),
    ("What is the weather like today?", ["nice", "lazy", "quick", "brown"]),
]


def hand_choice_scores(model: GuardedModel, prompt: str, choices) -> np.ndarray:
    """Mean per-token log-probability of each choice as a continuation (cloze, no chat template)."""
    logprobs = model.score([prompt] * len(choices), [" " + c for c in choices], chat=False)
    return np.array([float(lp.mean()) for lp in logprobs])


def clear_argmax(values) -> int:
    """The best choice by hand, asserting it wins by more than float32 rounding: the objective scores the
    choices in other batches, whose kernels may round differently, and must still pick the same one."""
    values = np.asarray(values, dtype=np.float64)
    top, second = np.sort(values)[::-1][:2]
    assert top - second > 1e-4, f"choices tied within float error: {values}"
    return int(np.argmax(values))


@pytest.fixture(scope="module")
def cloze_best(model, tok):
    """Per question, the choice the unguarded tiny model prefers, computed by hand."""
    bare = GuardedModel(model, tok)
    return [clear_argmax(hand_choice_scores(bare, prompt, choices)) for prompt, choices in QUESTIONS]


def mc_items(best: list[int], right: list[bool]) -> list[PromptItem]:
    """Items whose answer_index is the hand-computed argmax (right) or another choice (wrong)."""
    return [
        PromptItem(prompt, choices=tuple(choices), answer_index=b if ok else (b + 1) % len(choices))
        for (prompt, choices), b, ok in zip(QUESTIONS, best, right)
    ]


@pytest.fixture
def everything_guarded(model, tok):
    """The tiny model with every prompt corrupted by strong gaussian noise."""
    target = Target("all", ConstantClassifier(1.0), corruption=CorruptionSpec("gaussian_first_n", 5.0))
    return GuardedModel(model, tok, Guard([target], model_fingerprint=fingerprint(model), seed=3))


# --------------------------------------------------------------------------------------- registry


def test_builtin_objectives_are_registered():
    assert OBJECTIVES["choice_accuracy"] is ChoiceAccuracy
    assert OBJECTIVES["answer_recall"] is AnswerRecall
    assert OBJECTIVES["match_reference"] is MatchReference
    assert (ChoiceAccuracy.goal, AnswerRecall.goal, MatchReference.goal) == ("min", "min", "max")
    assert ChoiceAccuracy.monotone and AnswerRecall.monotone and not MatchReference.monotone


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(ObjectiveError) as info:
        make_objective("forget_harder", [PromptItem("Q?", answer="A")])
    message = str(info.value)
    assert "forget_harder" in message
    for name in ("answer_recall", "choice_accuracy", "match_reference"):
        assert name in message


def test_unknown_option_is_an_objective_error():
    with pytest.raises(ObjectiveError, match="answer_recall"):
        make_objective("answer_recall", [PromptItem("Q?", answer="A")], no_such_option=3)


def test_register_objective_adds_and_refuses_duplicates():
    name = "unit-test-constant"
    assert name not in OBJECTIVES
    with OBJECTIVES.override(name):

        @register_objective(name)
        class ConstantObjective(Objective):
            def default_target(self):
                return 0.25

            def per_item(self, model):
                return np.array([0.5] * len(self.items))

        assert OBJECTIVES[name] is ConstantObjective and ConstantObjective.name == name
        obj = make_objective(name, [PromptItem("Q?")])
        assert isinstance(obj, ConstantObjective)
        assert obj.target == 0.25 and obj.evaluate(None) == 0.5
        assert not obj.met(0.5) and obj.met(0.25) and obj.better(0.1, 0.2)
        assert name in obj.describe() and "<= 0.25" in obj.describe()

        with pytest.raises(ObjectiveError, match="registered already"):
            register_objective(name)(ConstantObjective)
        with pytest.raises(ObjectiveError, match="registered already"):
            register_objective("choice_accuracy")(ConstantObjective)
        assert OBJECTIVES["choice_accuracy"] is ChoiceAccuracy

        @register_objective(name, replace=True)
        class Replacement(ConstantObjective):
            pass

        assert OBJECTIVES[name] is Replacement
    assert name not in OBJECTIVES


# -------------------------------------------------------------------------------- choice accuracy


def test_choice_accuracy_default_target_is_chance_plus_tolerance():
    items = [PromptItem(p, choices=tuple(c), answer_index=0) for p, c in QUESTIONS[:3]]  # 3, 2, 4 choices
    obj = make_objective("choice_accuracy", items)
    assert obj.chance() == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3)
    assert obj.target == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3 + 0.05)
    obj = make_objective("choice_accuracy", items, tolerance=0.1)
    assert obj.target == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3 + 0.1)
    assert make_objective("choice_accuracy", items, target=0.4).target == 0.4


def test_choice_accuracy_drops_items_without_choices():
    mc = PromptItem("Capital?", choices=("Paris", "Rome"), answer_index=0)
    obj = make_objective("choice_accuracy", [PromptItem("Plain?", answer="x"), mc, PromptItem("Other?")])
    assert obj.items == [mc]
    assert obj.target == pytest.approx(0.55)


def test_choice_accuracy_without_usable_items_raises():
    with pytest.raises(ObjectiveError, match="choices"):
        make_objective("choice_accuracy", [PromptItem("Plain?", answer="x"), PromptItem("Other?")])


def test_choice_accuracy_bad_format():
    with pytest.raises(ObjectiveError, match="format"):
        make_objective("choice_accuracy", [PromptItem("Q?", choices=("a", "b"), answer_index=0)], format="essay")


@pytest.mark.parametrize(
    "right,expected",
    [([True] * 6, 1.0), ([False] * 6, 0.0), ([True, True, False, True, False, False], 0.5)],
)
def test_choice_accuracy_cloze_matches_hand_computation(bare, cloze_best, right, expected):
    items = mc_items(cloze_best, right)
    obj = make_objective("choice_accuracy", items, chat=False, batch_size=4)
    assert obj.per_item(bare).tolist() == [float(r) for r in right]
    assert obj.aggregate(np.array([float(r) for r in right])) == pytest.approx(expected)


def test_choice_accuracy_measures_the_model_it_is_given(bare, everything_guarded):
    """Evaluated on a guarded model, the hand computation uses that model's (corrupted) scores."""
    items = [PromptItem(p, choices=tuple(c), answer_index=0) for p, c in QUESTIONS]
    obj = make_objective("choice_accuracy", items, chat=False)
    expected = np.mean([clear_argmax(hand_choice_scores(everything_guarded, p, c)) == 0 for p, c in QUESTIONS])
    value = obj.evaluate(everything_guarded)
    assert value == pytest.approx(expected)
    assert 0.0 <= value <= 1.0


def test_choice_accuracy_letters_matches_hand_computation(bare, tok):
    """format='letters' with the chat template: next-token logits of the letters A, B, C, ..."""
    letters = "ABCD"
    letter_ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in letters]
    assert len(set(letter_ids)) == len(letter_ids)
    items = []
    for j, (prompt, choices) in enumerate(QUESTIONS):
        text = prompt + "\n" + "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(choices)) + "\nAnswer:"
        logits = bare.next_token_logits([text], chat=True)[0]
        best = clear_argmax(logits[letter_ids[: len(choices)]])
        items.append(PromptItem(prompt, choices=tuple(choices), answer_index=best if j % 2 == 0 else (best + 1) % len(choices)))
    obj = make_objective("choice_accuracy", items, format="letters", chat=True)
    assert obj.per_item(bare).tolist() == [1.0, 0.0] * 3


def test_choice_accuracy_letters_use_the_letter_token_not_a_shared_space(bare, tok):
    """Without the chat template the letters are scored as ' A', ' B', ...; the tiny tokenizer splits
    them into 'Ġ' + letter, so their first tokens coincide. The objective must compare the letters' own
    tokens (never one logit with itself, which would report every item as answered with choice 0)."""
    first_ids = {tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in "AB"}
    assert len(first_ids) == 1  # the premise: ' A' and ' B' start with the same token here
    letter_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][-1] for c in "AB"]
    items = []
    for j, (prompt, choices) in enumerate(QUESTIONS):
        text = prompt + "\n" + "\n".join(f"{'AB'[i]}. {c}" for i, c in enumerate(choices[:2])) + "\nAnswer:"
        best = clear_argmax(bare.next_token_logits([text], chat=False)[0][letter_ids])
        items.append(PromptItem(prompt, choices=tuple(choices[:2]), answer_index=best if j % 2 == 0 else 1 - best))
    obj = make_objective("choice_accuracy", items, format="letters", chat=False)
    assert obj.per_item(bare).tolist() == [1.0, 0.0] * (len(QUESTIONS) // 2) + [1.0] * (len(QUESTIONS) % 2)


def test_choice_accuracy_letters_limit(bare):
    items = [PromptItem("Q?", choices=tuple(f"c{i}" for i in range(11)), answer_index=0)]
    obj = make_objective("choice_accuracy", items, format="letters", chat=True)
    with pytest.raises(ObjectiveError, match="10"):
        obj.evaluate(bare)


def test_chat_default_follows_the_tokenizer(bare):
    obj = make_objective("choice_accuracy", [PromptItem("Q?", choices=("a", "b"), answer_index=0)])
    assert obj.chat is None and obj._chat(bare) is True  # the tiny tokenizer has a chat template
    assert make_objective("choice_accuracy", obj.items, chat=False)._chat(bare) is False


# ---------------------------------------------------------------------------------- answer recall

PROMPTS = [
    "Who is Harry Potter?",
    "What is the capital of France?",
    "Tell me a story about a dog.",
    "Can you help me write a letter?",
    "Numbers like 1, 2, 3",
    "The cat sat on the mat and",
]
MAX_NEW = 8


@pytest.fixture(scope="module")
def own_generations(model, tok):
    """The tiny model's greedy outputs (gibberish), batched as the objective batches them."""
    bare = GuardedModel(model, tok)
    outputs = bare.generate(PROMPTS, chat=False, max_new_tokens=MAX_NEW, batch_size=16)
    usable = [(p, o) for p, o in zip(PROMPTS, outputs) if normalize_answer(o)]
    assert len(usable) >= 3
    return usable


def test_answer_recall_validation():
    with pytest.raises(ObjectiveError, match="metric"):
        make_objective("answer_recall", [PromptItem("Q?", answer="A")], metric="bleu")
    with pytest.raises(ObjectiveError, match="answer"):
        make_objective("answer_recall", [PromptItem("Q?"), PromptItem("R?", answer="   ")])
    obj = make_objective("answer_recall", [PromptItem("Q?"), PromptItem("R?", answer="A")])
    assert [i.prompt for i in obj.items] == ["R?"]
    assert obj.target == 0.05
    assert make_objective("answer_recall", obj.items, metric="rouge_l").target == 0.2


def test_answer_recall_known_only_keeps_the_items_the_model_answers(bare, own_generations):
    known = [PromptItem(p, answer=o) for p, o in own_generations]
    absurd = [PromptItem(p, answer="zebra quantum xylophone") for p, _ in own_generations[:2]]
    obj = make_objective("answer_recall", absurd[:1] + known + absurd[1:], chat=False, max_new_tokens=MAX_NEW)
    assert len(obj.items) == len(known) + 2
    obj.prepare(bare)
    assert obj.items == known
    assert obj.baseline == 1.0
    assert obj.evaluate(bare) == 1.0
    assert not obj.met(obj.evaluate(bare))


def test_answer_recall_rouge_l_baseline(bare, own_generations):
    known = [PromptItem(p, answer=o) for p, o in own_generations]
    obj = make_objective("answer_recall", known, chat=False, max_new_tokens=MAX_NEW, metric="rouge_l")
    obj.prepare(bare)
    assert obj.baseline == pytest.approx(1.0)


def test_answer_recall_with_absurd_references_has_nothing_to_forget(bare, own_generations):
    absurd = [PromptItem(p, answer="zebra quantum xylophone") for p, _ in own_generations]
    obj = make_objective("answer_recall", absurd, chat=False, max_new_tokens=MAX_NEW)
    with pytest.raises(ObjectiveError, match="known_only"):
        obj.prepare(bare)
    # without known_only every item stays, and the model recalls none of them
    obj = make_objective("answer_recall", absurd, chat=False, max_new_tokens=MAX_NEW, known_only=False)
    obj.prepare(bare)
    assert len(obj.items) == len(absurd) and obj.baseline is None
    assert obj.evaluate(bare) == 0.0 and obj.met(0.0)


# ------------------------------------------------------------------------------- match reference

TOFU = [
    PromptItem("Who is Harry Potter?", answer="a wizard", paraphrased_answer="he is a wizard", perturbed_answers=("a dog", "a cat")),
    PromptItem("What is the capital of France?", answer="Paris", paraphrased_answer="it is Paris", perturbed_answers=("Rome",)),
    PromptItem("Where is Hogwarts?", answer="in Scotland", paraphrased_answer="Hogwarts is in Scotland", perturbed_answers=("in Paris", "in France", "in the sun")),
    PromptItem("What does the fox do?", answer="jumps", paraphrased_answer="the fox jumps", perturbed_answers=("sleeps", "reads")),
]


def test_match_reference_needs_exactly_one_reference():
    with pytest.raises(ObjectiveError, match="exactly one"):
        make_objective("match_reference", TOFU)
    with pytest.raises(ObjectiveError, match="exactly one"):
        make_objective("match_reference", TOFU, reference_values=[0.5], reference_items=TOFU)
    with pytest.raises(ObjectiveError, match="empty"):
        make_objective("match_reference", TOFU, reference_values=[])
    with pytest.raises(ObjectiveError, match="statistic"):
        make_objective("match_reference", TOFU, reference_values=[0.5], statistic="loss")


def test_match_reference_usable_items_depend_on_the_statistic():
    plain = PromptItem("Q?", answer="A")
    obj = make_objective("match_reference", [plain, *TOFU], reference_values=[1.0])
    assert obj.items == TOFU  # truth_ratio needs paraphrased and perturbed answers
    obj = make_objective("match_reference", [plain, *TOFU], reference_values=[1.0], statistic="answer_prob")
    assert obj.items == [plain, *TOFU]
    with pytest.raises(ObjectiveError):
        make_objective("match_reference", [plain], reference_values=[1.0])
    with pytest.raises(ObjectiveError, match="reference items"):
        make_objective("match_reference", TOFU, reference_items=[plain])
    assert obj.goal == "max" and obj.target == 0.5 and obj.met(0.6) and not obj.met(0.4)


def test_match_reference_answer_prob_matches_hand_computation(bare):
    obj = make_objective("match_reference", TOFU, reference_values=[0.5], statistic="answer_prob", chat=False)
    logprobs = bare.score([i.prompt for i in TOFU], [" " + i.answer for i in TOFU], chat=False)
    expected = [math.exp(float(lp.double().mean())) for lp in logprobs]
    np.testing.assert_allclose(obj.per_item(bare), expected, rtol=1e-5)


def test_match_reference_truth_ratio_matches_hand_computation(bare):
    obj = make_objective("match_reference", TOFU, reference_values=[0.5], chat=False, batch_size=3)
    expected = []
    for item in TOFU:
        para = float(bare.score([item.prompt], [" " + item.paraphrased_answer], chat=False)[0].double().mean())
        pert = [float(bare.score([item.prompt], [" " + p], chat=False)[0].double().mean()) for p in item.perturbed_answers]
        # P(perturbed) / P(paraphrased) = exp(NLL(paraphrased) - mean NLL(perturbed)), NLL = -mean logprob
        expected.append(math.exp(np.mean(pert) - para))
    np.testing.assert_allclose(obj.per_item(bare), expected, rtol=1e-4)


@pytest.mark.parametrize("statistic", ["truth_ratio", "answer_prob"])
def test_match_reference_with_its_own_values_has_p_value_one(bare, statistic):
    probe = make_objective("match_reference", TOFU, reference_values=[0.5], statistic=statistic, chat=False)
    own = probe.statistics(bare, TOFU).tolist()
    obj = make_objective("match_reference", TOFU, reference_values=own, statistic=statistic, chat=False)
    obj.prepare(bare)
    assert obj.reference_values == own
    assert obj.evaluate(bare) == pytest.approx(1.0)
    assert obj.met(obj.evaluate(bare))
    # a reference far from the model's values is distinguishable
    far = make_objective("match_reference", TOFU, reference_values=[1e6] * 8, statistic=statistic, chat=False)
    assert far.evaluate(bare) < 0.05


def test_match_reference_items_are_scored_by_prepare(bare):
    obj = make_objective("match_reference", TOFU, reference_items=TOFU, chat=False)
    with pytest.raises(ObjectiveError, match="prepare"):
        obj.evaluate(bare)
    obj.prepare(bare)
    assert len(obj.reference_values) == len(TOFU)
    assert obj.evaluate(bare) == pytest.approx(1.0)


def test_match_reference_changes_under_corruption(bare, everything_guarded):
    """The reference comes from the unguarded model; a heavily corrupted model's statistics move away
    from it (the p-value drops below 1)."""
    obj = make_objective("match_reference", TOFU, reference_items=TOFU, statistic="answer_prob", chat=False)
    obj.prepare(bare)
    assert not np.allclose(obj.per_item(everything_guarded), obj.reference_values)
