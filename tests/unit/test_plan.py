"""The public planning step (GuardedModel.plan and eco_unlearn.runtime.plan) on the tiny random Llama, and
the fingerprint computed once per GuardedModel.

The guard (unit_helpers.make_guard) flags 'Harry Potter' / 'Hogwarts' and adds gaussian noise (sigma 1.0)
to all user tokens but the last.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import eco_unlearn.models as models
from eco_unlearn.classifier import ConstantClassifier, KeywordClassifier
from eco_unlearn.errors import IncompatibleGuardError, PromptError
from eco_unlearn.runtime import (
    CorruptionSpec, EncodedPrompt, Guard, GuardDecision, GuardedModel, Plan, Target, TokenSelection,
    strongest_corruptions,
)
from unit_helpers import make_guard

FLAGGED = "Tell me about Harry Potter"  # 5 tokens
CLEAN = "The quick brown fox jumps over the lazy dog."
CHAT = [{"role": "user", "content": "Who is Harry Potter?"}]
MEDIUM = " ".join(["Paris"] * 100)  # 100 tokens of a 128-token context
LONG = " ".join(["Paris"] * 140)  # longer than the context


def test_plan_holds_each_prompts_rendering_tokens_mask_and_decision(guarded, tok):
    plan = guarded.plan([FLAGGED, CHAT, CLEAN])
    assert isinstance(plan, Plan) and len(plan) == 3 and plan.seed == guarded.guard.seed
    flagged, chat, clean = plan.rows
    assert flagged.prompt.text == FLAGGED and flagged.ids == tok(FLAGGED)["input_ids"]
    assert flagged.mask == [True] * 4 + [False] and flagged.decision.corrupted_tokens == 4
    rendered = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert chat.prompt.text == rendered and chat.prompt.user_text == "Who is Harry Potter?"
    assert chat.ids == tok(rendered, add_special_tokens=False)["input_ids"] and sum(chat.mask) == 5
    assert not clean.decision.flagged and not any(clean.mask) and clean.decision.corrupted_tokens == 0
    assert plan.decisions == [r.decision for r in plan.rows] == guarded.decide([FLAGGED, CHAT, CLEAN])
    assert plan.encoded == [r.encoded for r in plan.rows] and all(isinstance(e, EncodedPrompt) for e in plan.encoded)


def test_running_a_plan_equals_running_its_prompts(guarded, tok):
    """generate, score, next_token_logits, decide and prefill_inputs give the same from a plan as from prompts."""
    prompts, conts = [FLAGGED, CLEAN, "Who is Harry Potter?"], [" and Hogwarts", " again", " A wizard"]
    assert guarded.generate(guarded.plan(prompts, reserve=5), max_new_tokens=5) == guarded.generate(prompts, max_new_tokens=5)
    texts, decisions = guarded.generate(guarded.plan(prompts, reserve=3), max_new_tokens=3, return_decisions=True)
    assert decisions == guarded.decide(prompts)
    assert torch.equal(guarded.next_token_logits(guarded.plan(prompts)), guarded.next_token_logits(prompts))
    reserve = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in conts]
    for a, b in zip(guarded.score(guarded.plan(prompts, reserve=reserve), conts), guarded.score(prompts, conts)):
        assert torch.equal(a, b)
    planned, direct = guarded.prefill_inputs(guarded.plan(prompts)), guarded.prefill_inputs(prompts)
    assert torch.equal(planned.inputs_embeds, direct.inputs_embeds) and torch.equal(planned.input_ids, direct.input_ids)
    assert guarded.decide(guarded.plan(prompts)) == guarded.decide(prompts)
    chat = guarded.plan([CHAT], reserve=4)
    assert guarded.generate(chat, max_new_tokens=4) == guarded.generate([CHAT], max_new_tokens=4)


def test_a_plan_from_encoded_prompts_is_not_rendered_or_tokenized_again(guarded, encodings):
    expected = guarded.plan([FLAGGED, CHAT]).decisions
    encodings["rendered"].clear()
    encodings["tokenized"].clear()
    encoded = guarded.encode([FLAGGED, CHAT])
    assert encodings == {"rendered": [FLAGGED, CHAT], "tokenized": [FLAGGED, encoded[1].prompt.text]}
    plan = guarded.plan(encoded, reserve=3)
    guarded.generate(plan, max_new_tokens=3)
    guarded.next_token_logits(guarded.plan(plan.encoded))
    assert plan.decisions == expected
    assert encodings == {"rendered": [FLAGGED, CHAT], "tokenized": [FLAGGED, encoded[1].prompt.text]}


def test_decisions_passed_in_are_honoured(model, tok, guarded, bare):
    """Decisions made elsewhere are planned as decided: their selections, corruptions and targets, with the
    seed given; without a guard at all, and overriding an attached guard's."""
    corruptions, selections = [CorruptionSpec("gaussian_first_n", 1.0)], [TokenSelection("all")]
    decided = [GuardDecision(True, ["outside"], {}, corruptions=corruptions, selections=selections),
               GuardDecision(False, [], {})]
    plan = bare.plan([FLAGGED, CLEAN], reserve=6, decisions=decided, seed=5)
    assert plan.seed == 5 and plan.rows[0].mask == [True] * 5 and not any(plan.rows[1].mask)
    assert plan.decisions[0].targets == ["outside"] and plan.decisions[0].corrupted_tokens == 5
    assert decided[0].corrupted_tokens == 0  # the decisions given are not modified
    everything = Guard([Target("all", ConstantClassifier(1.0), corruptions[0], tokens=selections[0])], seed=5)
    with pytest.warns(UserWarning, match="no model fingerprint"):
        reference = GuardedModel(model, tok, everything)
    assert bare.generate(plan, max_new_tokens=6)[0] == reference.generate(FLAGGED, max_new_tokens=6)[0]
    assert bare.generate(plan, max_new_tokens=6)[1] == bare.generate(CLEAN, max_new_tokens=6)[0]
    unflagged = guarded.plan([FLAGGED], reserve=4, decisions=[GuardDecision(False, [], {})])
    assert not any(unflagged.rows[0].mask)
    assert guarded.generate(unflagged, max_new_tokens=4) == bare.generate(FLAGGED, max_new_tokens=4)
    with pytest.raises(PromptError, match="2 prompts but 1 decisions"):
        bare.plan([FLAGGED, CLEAN], decisions=decided[:1])
    with pytest.raises(PromptError, match="seed must be a 64-bit signed integer"):
        bare.plan(FLAGGED, decisions=decided[:1], seed=2**63)


def test_the_seed_of_a_plan_seeds_its_noise(guarded):
    noisy = [guarded.prefill_inputs(guarded.plan(FLAGGED, seed=s)).inputs_embeds for s in (0, 0, 1)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    assert torch.equal(noisy[0], guarded.prefill_inputs(FLAGGED).inputs_embeds)  # the guard's seed is 0


def test_a_flagged_prompt_with_an_empty_mask_warns_unless_told_not_to(model, tok):
    gm = GuardedModel(model, tok, make_guard(model, tokens=TokenSelection("entities", ("Hermione",), fallback=None)))
    with pytest.warns(UserWarning, match="answered uncorrupted"):
        gm.plan(FLAGGED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (row,) = gm.plan(FLAGGED, warn=False).rows
    assert row.decision.flagged and not any(row.mask)


def test_reserve_and_context_checks(guarded, tok):
    """reserve keeps room for new tokens as generate does; a plan run with more new tokens than it reserved
    is refused, naming the reserve it needs."""
    with pytest.raises(PromptError, match="context of 128"):
        guarded.plan(MEDIUM, reserve=40)
    with pytest.raises(PromptError, match="prompt 1 .*context"):
        guarded.plan([CLEAN, LONG])
    with pytest.raises(PromptError, match="1 prompts but 2 continuations"):
        guarded.plan(MEDIUM, reserve=[1, 2])
    plan = guarded.plan(MEDIUM)
    with pytest.raises(PromptError, match="prompt 0 of the plan has 100 tokens.*reserve=40"):
        guarded.generate(plan, max_new_tokens=40)
    with pytest.raises(PromptError, match="reserve=40"):
        guarded.prefill_inputs(plan, reserve_tokens=40)
    with pytest.raises(PromptError, match="reserve=29"):
        guarded.score(plan, " Paris" * 29)
    assert guarded.generate(guarded.plan(MEDIUM, reserve=20), max_new_tokens=20) == guarded.generate(MEDIUM, max_new_tokens=20)
    with pytest.raises(PromptError, match="no prompts"):
        guarded.generate(Plan([]), max_new_tokens=2)


def test_left_truncation_happens_when_planning(model, tok, guard):
    gm = GuardedModel(model, tok, guard, truncation="left")
    with pytest.warns(UserWarning, match="truncated from the left to 124 of its 140 tokens"):
        plan = gm.plan(LONG, reserve=4)
    (row,) = plan.rows
    assert len(row.encoded.ids) == 140 and row.ids == tok(LONG)["input_ids"][-124:] and len(row.mask) == 124
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # planned already: running the plan truncates nothing
        planned = gm.generate(plan, max_new_tokens=4)
    with pytest.warns(UserWarning, match="truncated"):
        assert planned == gm.generate(LONG, max_new_tokens=4)
    with pytest.warns(UserWarning, match="truncated from the left to 128"):
        (flagged,) = gm.plan(LONG + " Harry Potter").rows
    assert flagged.decision.corrupted_tokens == 127 == sum(flagged.mask)
    with pytest.raises(PromptError, match="leave no room"):
        gm.plan(CLEAN, reserve=200)


def test_decisions_carry_their_targets_selections_and_strongest_corruptions():
    a = Target("a", KeywordClassifier(["Harry"]), CorruptionSpec("gaussian_first_n", 0.5), tokens=TokenSelection("all"))
    b = Target("b", KeywordClassifier(["Potter"]), CorruptionSpec("gaussian_first_n", 2.0))
    c = Target("c", KeywordClassifier(["Potter"]), CorruptionSpec("zero_first_n", 3))
    flagged, clean = Guard([a, b, c]).decide(["Harry Potter", "Paris"])
    assert flagged.selections == [TokenSelection("all"), TokenSelection()]  # b and c share one, listed once
    assert flagged.corruptions == strongest_corruptions([a, b, c])
    assert strongest_corruptions([a, b, c]) == [CorruptionSpec("gaussian_first_n", 2.0), CorruptionSpec("zero_first_n", 3)]
    assert clean.selections == [] and "selections" not in flagged.to_dict()


@pytest.fixture
def hashes(monkeypatch, model):
    """How many fingerprints were computed since the test began (each hashes the whole embedding matrix)."""
    calls = []
    real = models._hash
    monkeypatch.setattr(models, "_hash", lambda *args: calls.append(args) or real(*args))
    models.fingerprint(model)
    per_fingerprint = len(calls)
    calls.clear()
    return lambda: len(calls) / per_fingerprint


def test_attaching_many_guards_fingerprints_the_model_once(model, tok, other_model, hashes):
    guards, wrong = [make_guard(model, seed=s) for s in range(5)], make_guard(other_model)
    before = hashes()
    gm = GuardedModel(model, tok, guards[0])
    for guard in [*guards[1:], None, guards[0]]:
        gm.attach(guard)
    with pytest.raises(IncompatibleGuardError):
        gm.attach(wrong)
    assert hashes() - before == 1
    assert gm.model_fingerprint == models.fingerprint(model)


def test_check_model_takes_a_precomputed_fingerprint(model, other_model, hashes):
    guard = make_guard(model)
    before = hashes()
    guard.check_model(model)  # computes it
    assert hashes() - before == 1
    guard.check_model(model, fingerprint=models.fingerprint(model))
    assert hashes() - before == 2  # only the explicit fingerprint() above
    with pytest.raises(IncompatibleGuardError, match="another model"):
        guard.check_model(model, fingerprint=models.fingerprint(other_model))
    with pytest.warns(UserWarning, match="another model"):
        guard.check_model(model, force=True, fingerprint=models.fingerprint(other_model))
