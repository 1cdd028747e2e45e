"""The guard on the real SmolLM2-135M-Instruct: it forgets flagged prompts and changes nothing else."""

from __future__ import annotations

import hashlib

import pytest
import torch

from eco_unlearn import Guard, GuardedModel, IncompatibleGuardError, PromptError
from eco_unlearn.demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS

pytestmark = pytest.mark.integration

FRIEND = "Who is Harry Potter's best friend?"


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def test_flagged_prompt_forgets_and_clean_prompts_are_untouched(smollm2, demo):
    model, tok = smollm2
    bare = GuardedModel(model, tok)
    guarded = GuardedModel(model, tok, demo)
    prompts = [FRIEND, *DEMO_CLEAN_PROMPTS]
    before = bare.generate(prompts, chat=True, max_new_tokens=24)
    after, decisions = guarded.generate(prompts, chat=True, max_new_tokens=24, return_decisions=True)
    assert "Weasley" in before[0], before[0]  # the model knows the answer...
    assert "Weasley" not in after[0] and "Ron" not in after[0], after[0]  # ...and the guard makes it forget
    assert decisions[0].flagged and decisions[0].targets == ["harry-potter"]
    assert decisions[0].corrupted_tokens == 2  # " Harry", " Potter"
    assert after[1:] == before[1:]
    assert not any(d.flagged for d in decisions[1:])


def test_score_lowers_the_forgotten_answer_only(smollm2, demo):
    model, tok = smollm2
    bare, guarded = GuardedModel(model, tok), GuardedModel(model, tok, demo)
    prompts = [FRIEND, "What is the capital of France?"]
    answers = ["Harry Potter's best friend is Ron Weasley.", "The capital of France is Paris."]
    clean = bare.score(prompts, answers, chat=True)
    guarded_scores = guarded.score(prompts, answers, chat=True)
    assert guarded_scores[0].sum() < clean[0].sum() - 5.0
    assert torch.equal(guarded_scores[1], clean[1])


def test_mixed_batch_equals_one_by_one(smollm2, demo):
    model, tok = smollm2
    guarded = GuardedModel(model, tok, demo)
    prompts = [DEMO_FORGET_PROMPTS[1], DEMO_CLEAN_PROMPTS[0], DEMO_FORGET_PROMPTS[2]]
    batch = guarded.next_token_logits(prompts, chat=True)
    single = torch.cat([guarded.next_token_logits(p, chat=True) for p in prompts])
    assert torch.allclose(batch, single, atol=1e-4)
    # the same prompt always gets the same corruption
    assert torch.equal(guarded.next_token_logits(prompts[0], chat=True), guarded.next_token_logits(prompts[0], chat=True))


def test_weights_are_bit_identical_after_use(smollm2, demo):
    model, tok = smollm2
    digest = _weights_digest(model)
    guarded = GuardedModel(model, tok, demo)
    guarded.generate(list(DEMO_FORGET_PROMPTS[:2]), chat=True, max_new_tokens=8)
    guarded.score(DEMO_FORGET_PROMPTS[0], "Ron Weasley", chat=True)
    guarded.next_token_logits(DEMO_FORGET_PROMPTS[:2], chat=True)
    assert _weights_digest(model) == digest


def test_guard_round_trip_and_wrong_model(smollm2, demo, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    model, tok = smollm2
    demo.save(tmp_path / "guard")
    loaded = Guard.load(tmp_path / "guard")
    assert loaded.model_fingerprint == demo.model_fingerprint
    assert GuardedModel(model, tok, loaded).decide(FRIEND)[0].flagged
    other = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(IncompatibleGuardError, match="another model"):
        GuardedModel(other, tok, loaded)


def test_over_long_prompt_is_refused_or_truncated(smollm2, demo):
    """SmolLM2's own context (8192) refuses a longer prompt, or keeps its newest 8192 tokens with a warning.
    The truncated batch is checked, not run: an 8192-token CPU forward pass would take a minute, and the
    forward pass of a left-truncated prompt is the unit tests' (test_left_truncation_warns_and_works); a
    shorter context here runs one on the real model."""
    model, tok = smollm2
    guarded = GuardedModel(model, tok, demo)
    long_prompt = "Hogwarts " * 8200
    ids = tok(long_prompt)["input_ids"]
    assert guarded.max_length == 8192 < len(ids)
    with pytest.raises(PromptError, match="context of 8192"):
        guarded.next_token_logits(long_prompt)
    with pytest.warns(UserWarning, match="truncated from the left to 8192"):
        batch = GuardedModel(model, tok, demo, truncation="left").prefill_inputs(long_prompt)
    assert batch.input_ids[0].tolist() == ids[-8192:] and batch.decisions[0].flagged
    assert batch.inputs_embeds.shape == (1, 8192, model.config.hidden_size)
    with pytest.warns(UserWarning, match="truncated from the left to 64"):
        logits = GuardedModel(model, tok, demo, truncation="left", max_length=64).next_token_logits(long_prompt)
    assert logits.shape == (1, model.config.vocab_size) and torch.isfinite(logits).all()
