"""Tests of eco_unlearn.runtime.guarded.GuardedModel on the tiny random Llama.

The guard (see unit_helpers.make_guard) flags prompts mentioning 'Harry Potter' or 'Hogwarts' and adds
gaussian noise (sigma 1.0) to all user tokens but the last.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from eco_unlearn.runtime.corruption import CorruptionSpec
from eco_unlearn.errors import PromptError
from eco_unlearn.runtime.guarded import GuardedModel
from eco_unlearn.runtime.tokens import TokenSelection
from unit_helpers import make_guard

FLAGGED = "Tell me about Harry Potter"  # 5 tokens
FLAGGED_2 = "Who is Harry Potter?"  # 6 tokens
FLAGGED_3 = "Hogwarts and Harry Potter"  # 6 tokens
CLEAN = "The quick brown fox jumps over the lazy dog."
CLEAN_SHORT = "Paris is nice"
NEW = 5


def ids_of(tok, text):
    return tok(text)["input_ids"]


def clean_embeds(model, ids):
    with torch.no_grad():
        return model.get_input_embeddings()(torch.tensor([ids]))[0]


def direct_generate(model, tok, text, max_new_tokens=NEW):
    ids = torch.tensor([ids_of(tok, text)])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def direct_logprobs(model, tok, prompt, continuation):
    p, c = ids_of(tok, prompt), tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
    logprobs = torch.log_softmax(logits, -1)[0]
    return logprobs[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c)]


def noise_of(guarded, model, tok, text, record):
    """The difference between the embeddings the model received and the clean ones, for one prompt."""
    record.clear()
    guarded.next_token_logits(text)
    (call,) = record
    assert call["inputs_embeds"] is not None
    return call["inputs_embeds"][0] - clean_embeds(model, ids_of(tok, text))


def test_prompt_token_counts(tok):
    """Preconditions on the tiny tokenizer used by the tests below."""
    assert len(ids_of(tok, FLAGGED)) == 5
    assert len(ids_of(tok, FLAGGED_2)) == len(ids_of(tok, FLAGGED_3)) == 6
    assert len(ids_of(tok, CLEAN)) > len(ids_of(tok, FLAGGED_2)) > len(ids_of(tok, CLEAN_SHORT))


# ------------------------------------------------------------------------------------ unflagged prompts


def test_unflagged_generate_identical_to_bare_and_direct(guarded, bare, model, tok):
    """An unflagged prompt generates exactly what the unguarded model generates."""
    for text in (CLEAN, CLEAN_SHORT):
        out, decisions = guarded.generate(text, max_new_tokens=NEW, return_decisions=True)
        assert not decisions[0].flagged and decisions[0].corrupted_tokens == 0
        assert out == bare.generate(text, max_new_tokens=NEW)
        assert out == [direct_generate(model, tok, text)]


def test_unflagged_logits_identical_to_bare_and_direct(guarded, bare, model, tok):
    """Next-token logits of unflagged prompts are bit-identical to the bare model's."""
    ids = torch.tensor([ids_of(tok, CLEAN)])
    with torch.no_grad():
        direct = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
    got = guarded.next_token_logits(CLEAN)
    assert got.shape == (1, len(tok))
    assert torch.equal(got, bare.next_token_logits(CLEAN))
    with torch.no_grad():  # the path generate() takes for its prefill: logits of the last position only
        last_only = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1).logits[:, -1]
    assert torch.equal(got, last_only)
    assert torch.allclose(got, direct, atol=1e-6)  # a full forward differs only in matmul rounding


def test_unflagged_score_identical_to_bare_and_direct(guarded, bare, model, tok):
    """Scores of unflagged prompts are bit-identical to the bare model's log-probabilities, and equal (up to
    matmul rounding) to log-probabilities read off a full forward pass."""
    got = guarded.score(CLEAN, " the lazy dog")
    assert len(got) == 1 and got[0].shape == (len(tok(" the lazy dog", add_special_tokens=False)["input_ids"]),)
    assert torch.equal(got[0], bare.score(CLEAN, " the lazy dog")[0])
    # score() keeps only the last len+1 logits, the direct pass all of them: another output-head matmul shape
    torch.testing.assert_close(got[0], direct_logprobs(model, tok, CLEAN, " the lazy dog"), atol=1e-5, rtol=1e-6)
    assert (got[0] < 0).all()


def test_unflagged_batch_uses_plain_input_ids(guarded, record_forward):
    """A batch without flagged prompts never passes inputs_embeds to the model."""
    guarded.next_token_logits([CLEAN, CLEAN_SHORT])
    guarded.score([CLEAN, CLEAN_SHORT], [" a", " b"])
    guarded.generate(CLEAN_SHORT, max_new_tokens=2)
    assert record_forward and all(c["inputs_embeds"] is None for c in record_forward)


# ------------------------------------------------------------------------------------ flagged prompts


def test_flagged_prompt_changes_logits_and_scores(guarded, bare):
    """A flagged prompt's next-token logits and continuation scores differ from the bare model's."""
    logits, decisions = guarded.next_token_logits(FLAGGED, return_decisions=True)
    assert decisions[0].flagged
    assert not torch.allclose(logits, bare.next_token_logits(FLAGGED), atol=1e-3)
    scores = guarded.score(FLAGGED, " and Hogwarts")[0]
    bare_scores = bare.score(FLAGGED, " and Hogwarts")[0]
    assert scores.shape == bare_scores.shape
    assert not torch.allclose(scores, bare_scores, atol=1e-3)


def test_flagged_decisions(guarded, tok):
    """Decisions report the target, its score, the corruption and all_but_last of the user tokens."""
    decisions = guarded.decide([FLAGGED, CLEAN, FLAGGED_2])
    assert [d.flagged for d in decisions] == [True, False, True]
    assert [d.targets for d in decisions] == [["hp"], [], ["hp"]]
    assert [d.scores for d in decisions] == [{"hp": 1.0}, {"hp": 0.0}, {"hp": 1.0}]
    assert [d.corrupted_tokens for d in decisions] == [4, 0, 5]
    assert decisions[0].corruptions == [CorruptionSpec("gaussian_first_n", 1.0)]
    _, gen_decisions = guarded.generate([FLAGGED, CLEAN], max_new_tokens=2, return_decisions=True)
    assert [d.corrupted_tokens for d in gen_decisions] == [4, 0]
    _, score_decisions = guarded.score(FLAGGED, " x", return_decisions=True)
    assert score_decisions[0].corrupted_tokens == 4


def test_flagged_chat_prompt_corrupts_only_user_tokens(guarded, model, tok, record_forward):
    """With a chat prompt, exactly the user's tokens but the last are corrupted; template tokens are clean."""
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Tell me about Harry Potter"},
    ]
    logits, (decision,) = guarded.next_token_logits(messages, return_decisions=True)
    assert decision.corrupted_tokens == 4
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    (call,) = record_forward
    changed = (call["inputs_embeds"][0] != clean_embeds(model, enc["input_ids"])).any(-1)
    changed_texts = [text[a:b] for (a, b), c in zip(enc["offset_mapping"], changed.tolist()) if c]
    assert changed_texts == ["Tell", " me", " about", " Harry"]
    # chat=True on a plain string renders the same as a one-message conversation
    assert torch.equal(
        guarded.next_token_logits("Tell me about Harry Potter", chat=True),
        guarded.next_token_logits([{"role": "user", "content": "Tell me about Harry Potter"}]),
    )


def test_entities_selection_corrupts_only_entity_tokens(model, tok, record_forward):
    """TokenSelection('entities') corrupts exactly the tokens of the entity."""
    guard = make_guard(model, tokens=TokenSelection("entities", ("harry potter",)))
    gm = GuardedModel(model, tok, guard)
    text = "Tell me about Harry Potter and Hogwarts"
    (decision,) = gm.decide(text)
    assert decision.corrupted_tokens == 2
    gm.next_token_logits(text)
    enc = tok(text, return_offsets_mapping=True)
    changed = (record_forward[0]["inputs_embeds"][0] != clean_embeds(model, enc["input_ids"])).any(-1)
    assert [text[a:b] for (a, b), c in zip(enc["offset_mapping"], changed.tolist()) if c] == [" Harry", " Potter"]


# ------------------------------------------------------------------------------------ mixed batches


def test_mixed_batch_unflagged_rows_match_alone(guarded, bare):
    """In a left-padded batch with flagged prompts, unflagged rows equal their results computed alone."""
    batch = [CLEAN, FLAGGED_2, CLEAN_SHORT]  # longest, middle, shortest
    logits, decisions = guarded.next_token_logits(batch, return_decisions=True)
    assert [d.flagged for d in decisions] == [False, True, False]
    torch.testing.assert_close(logits[0], bare.next_token_logits(CLEAN)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[2], bare.next_token_logits(CLEAN_SHORT)[0], atol=1e-5, rtol=0)


def test_mixed_batch_flagged_longest_row_matches_alone(guarded):
    """A flagged row that needs no padding gets the same corruption in a batch as alone."""
    batch = [FLAGGED_2, CLEAN_SHORT]
    logits = guarded.next_token_logits(batch)
    torch.testing.assert_close(logits[0], guarded.next_token_logits(FLAGGED_2)[0], atol=1e-5, rtol=0)


def test_mixed_batch_flagged_padded_row_matches_alone(guarded):
    """A flagged row that is left-padded in a batch gets the same corruption as when run alone."""
    batch = [CLEAN, FLAGGED_2]
    logits = guarded.next_token_logits(batch)
    torch.testing.assert_close(logits[1], guarded.next_token_logits(FLAGGED_2)[0], atol=1e-5, rtol=0)


def test_mixed_batch_generate_flagged_padded_row_same_noise(guarded, model, tok, record_forward):
    """generate(): the prefill embeddings of a left-padded flagged row equal those it gets alone."""
    guarded.generate([CLEAN, FLAGGED_2], max_new_tokens=1)
    batched = record_forward[0]["inputs_embeds"][1, -len(ids_of(tok, FLAGGED_2)) :]
    record_forward.clear()
    guarded.generate(FLAGGED_2, max_new_tokens=1)
    assert torch.equal(batched, record_forward[0]["inputs_embeds"][0])


@pytest.mark.parametrize(
    "batch",
    [[FLAGGED, CLEAN_SHORT, "Hello"], [CLEAN, FLAGGED, CLEAN_SHORT, FLAGGED_3]],
    ids=["flagged-longest", "flagged-padded"],
)
def test_mixed_batch_generate(guarded, batch):
    """Greedy generation of a mixed batch: every row's text equals its generation alone."""
    together, decisions = guarded.generate(batch, max_new_tokens=NEW, return_decisions=True)
    assert any(d.flagged for d in decisions) and not all(d.flagged for d in decisions)
    alone = [guarded.generate(p, max_new_tokens=NEW)[0] for p in batch]
    assert together == alone


def test_mixed_batch_score_rows_match_alone(guarded, bare):
    """score() right-pads, so every row (flagged or not) equals its score computed alone."""
    prompts = [CLEAN_SHORT, FLAGGED_2, CLEAN, FLAGGED]
    conts = [" and sunny today", " A wizard", " again", " and Hogwarts"]
    together, decisions = guarded.score(prompts, conts, return_decisions=True)
    assert [d.flagged for d in decisions] == [False, True, False, True]
    for p, c, got in zip(prompts, conts, together):
        torch.testing.assert_close(got, guarded.score(p, c)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(together[0], bare.score(CLEAN_SHORT, conts[0])[0], atol=1e-5, rtol=0)


def test_batch_size_chunking(guarded):
    """Chunks of one give the same logits and scores as alone / as one batch."""
    prompts = [CLEAN, FLAGGED, CLEAN_SHORT]
    one = guarded.next_token_logits(prompts, batch_size=1)
    full = guarded.next_token_logits(prompts, batch_size=8)
    assert one.shape == full.shape == (3, len(guarded.tokenizer))
    assert torch.equal(one[1], guarded.next_token_logits(FLAGGED)[0])
    torch.testing.assert_close(one[0], full[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(one[2], full[2], atol=1e-5, rtol=0)
    conts = [" x", " and Hogwarts", " is it?"]
    by_two = guarded.score(prompts, conts, batch_size=2)
    by_one = guarded.score(prompts, conts, batch_size=1)
    assert [s.shape[0] for s in by_two] == [len(guarded.tokenizer(c)["input_ids"]) for c in conts]
    for a, b in zip(by_two, by_one):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ prefill only


def test_generate_corrupts_only_the_prefill(guarded, model, tok, record_forward):
    """Only the first forward call gets (corrupted) embeddings; decode steps get the generated token ids."""
    text = guarded.generate(FLAGGED, max_new_tokens=NEW)[0]
    assert len(record_forward) == NEW  # prefill + NEW-1 decode steps (no early EOS for this prompt)
    prefill, steps = record_forward[0], record_forward[1:]

    ids = ids_of(tok, FLAGGED)
    assert prefill["inputs_embeds"] is not None and prefill["inputs_embeds"].shape == (1, len(ids), 32)
    clean = clean_embeds(model, ids)
    changed = (prefill["inputs_embeds"][0] != clean).any(-1)
    assert changed.tolist() == [True] * (len(ids) - 1) + [False]

    generated = [int(prefill["logits"][0, -1].argmax())]
    for step in steps:
        assert step["inputs_embeds"] is None
        assert step["input_ids"].shape == (1, 1)
        assert int(step["input_ids"][0, 0]) == generated[-1]
        generated.append(int(step["logits"][0, -1].argmax()))
    assert tok.decode(generated, skip_special_tokens=True) == text


def test_generate_mixed_batch_decode_steps_are_plain_ids(guarded, record_forward):
    """In a mixed batch too, only the prefill receives inputs_embeds."""
    guarded.generate([FLAGGED, CLEAN], max_new_tokens=3)
    assert record_forward[0]["inputs_embeds"] is not None
    assert all(c["inputs_embeds"] is None and c["input_ids"].shape == (2, 1) for c in record_forward[1:])


def test_score_continuation_embeddings_are_clean(guarded, model, tok, record_forward):
    """score(): the continuation's embeddings fed to the model equal the clean ones; the prompt's do not."""
    prompt_ids = ids_of(tok, FLAGGED)
    tail = tok(" and Hogwarts", add_special_tokens=False)["input_ids"]
    guarded.score(FLAGGED, " and Hogwarts")
    (call,) = record_forward
    fed = call["inputs_embeds"][0]
    assert fed.shape == (len(prompt_ids) + len(tail), 32)
    clean = clean_embeds(model, prompt_ids + tail)
    P = len(prompt_ids)
    assert torch.equal(fed[P:], clean[P:])
    assert torch.equal(fed[P - 1], clean[P - 1])  # last prompt token: all_but_last
    assert (fed[: P - 1] != clean[: P - 1]).any(-1).all()


# ------------------------------------------------------------------------------------ determinism


def test_same_prompt_same_corruption(guarded):
    """The same flagged prompt gives bit-identical corrupted logits every time (also via a new wrapper)."""
    a = guarded.next_token_logits(FLAGGED)
    b = guarded.next_token_logits(FLAGGED)
    assert torch.equal(a, b)
    again = GuardedModel(guarded.model, guarded.tokenizer, make_guard(guarded.model))
    assert torch.equal(a, again.next_token_logits(FLAGGED))
    assert guarded.generate(FLAGGED, max_new_tokens=NEW) == guarded.generate(FLAGGED, max_new_tokens=NEW)


def test_different_prompts_get_different_noise(guarded, model, tok, record_forward):
    """Two different flagged prompts of the same length get different noise; one prompt always the same."""
    n2 = noise_of(guarded, model, tok, FLAGGED_2, record_forward)
    n3 = noise_of(guarded, model, tok, FLAGGED_3, record_forward)
    assert n2.shape == n3.shape
    assert not torch.allclose(n2[:-1], n3[:-1])
    assert torch.equal(n2, noise_of(guarded, model, tok, FLAGGED_2, record_forward))
    assert n2[:-1].std().item() == pytest.approx(1.0, abs=0.35)  # sigma of the guard
    assert torch.equal(n2[-1], torch.zeros(32))


def test_guard_seed_changes_noise(model, tok, record_forward):
    """Another guard seed gives another (but again reproducible) noise for the same prompt."""
    g0 = GuardedModel(model, tok, make_guard(model, seed=0))
    g1 = GuardedModel(model, tok, make_guard(model, seed=1))
    n0 = noise_of(g0, model, tok, FLAGGED, record_forward)
    n1 = noise_of(g1, model, tok, FLAGGED, record_forward)
    assert not torch.allclose(n0, n1)


def test_sampling_is_seeded_and_leaves_global_rng_alone(guarded):
    """temperature>0 with a seed is reproducible, and generate does not consume the global RNG."""
    state = torch.get_rng_state()
    a = guarded.generate([FLAGGED, CLEAN], max_new_tokens=NEW, temperature=1.0, seed=3)
    b = guarded.generate([FLAGGED, CLEAN], max_new_tokens=NEW, temperature=1.0, seed=3)
    assert a == b
    assert torch.equal(torch.get_rng_state(), state)


# ------------------------------------------------------------------------------------ weights untouched


def test_weights_bit_identical_after_use(guarded, model):
    """generate/score/next_token_logits on flagged prompts never modify the model's weights."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    guarded.generate([FLAGGED, CLEAN, FLAGGED_2], max_new_tokens=3)
    guarded.generate(FLAGGED, max_new_tokens=3, temperature=0.7, seed=1)
    guarded.score([FLAGGED, FLAGGED_3], [" a", " b"])
    guarded.next_token_logits([FLAGGED_2, CLEAN_SHORT])
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name


def test_outputs_computed_without_autograd(guarded, model):
    """Even with trainable parameters, outputs carry no autograd graph (everything runs under no_grad)."""
    assert any(p.requires_grad for p in model.parameters())  # the fixture model is not frozen
    logits = guarded.next_token_logits([FLAGGED, CLEAN])
    (scores,) = guarded.score(FLAGGED, " and Hogwarts")
    assert not logits.requires_grad and logits.grad_fn is None
    assert not scores.requires_grad and scores.grad_fn is None
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("prompt", ["", "   ", [], [{"role": "system", "content": "x"}]])
def test_empty_prompt_rejected(guarded, prompt):
    """Empty prompts raise PromptError in every entry point."""
    with pytest.raises(PromptError):
        guarded.generate(prompt, max_new_tokens=2)
    with pytest.raises(PromptError):
        guarded.next_token_logits(prompt)
    with pytest.raises(PromptError):
        guarded.score(prompt, " x")
    with pytest.raises(PromptError):
        guarded.decide(prompt)


LONG = " ".join(["Paris"] * 140)  # one token per word: 140 tokens > context 128


def test_over_long_prompt_rejected(guarded, tok):
    """A prompt longer than the context raises PromptError mentioning the context."""
    assert len(ids_of(tok, LONG)) > 128
    with pytest.raises(PromptError, match="context of 128"):
        guarded.next_token_logits(LONG)
    with pytest.raises(PromptError, match="prompt 1 .*context"):
        guarded.next_token_logits([CLEAN, LONG])
    # the new tokens count against the context too
    medium = " ".join(["Paris"] * 100)
    guarded.next_token_logits(medium)
    with pytest.raises(PromptError, match="context"):
        guarded.generate(medium, max_new_tokens=40)
    with pytest.raises(PromptError, match="context"):
        guarded.score(medium, " Paris" * 40)


def test_left_truncation_warns_and_works(model, tok, guard, record_forward):
    """truncation='left' keeps the newest tokens with a warning, for logits, generate and score."""
    gm = GuardedModel(model, tok, guard, truncation="left")
    flagged_long = LONG + " Harry Potter"
    with pytest.warns(UserWarning, match="truncated from the left to 128"):
        logits, (decision,) = gm.next_token_logits(flagged_long, return_decisions=True)
    assert logits.shape == (1, len(tok))
    assert decision.flagged and decision.corrupted_tokens == 127
    fed = record_forward[-1]["inputs_embeds"]
    assert fed.shape == (1, 128, 32)
    with pytest.warns(UserWarning, match="truncated from the left to 124"):
        (text,) = gm.generate(LONG, max_new_tokens=4)
    assert isinstance(text, str)
    with pytest.warns(UserWarning, match="truncated"):
        (scores,) = gm.score(LONG, " Paris Paris")
    assert scores.shape == (2,)
    # the truncated prompt keeps its last tokens: same logits as the explicitly shortened prompt
    short = tok.decode(ids_of(tok, LONG)[-128:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = GuardedModel(model, tok).next_token_logits(short)
    with pytest.warns(UserWarning):
        got = GuardedModel(model, tok, truncation="left").next_token_logits(LONG)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("max_new_tokens", [0, -1, 1.5, None])
def test_bad_max_new_tokens(guarded, max_new_tokens):
    """max_new_tokens must be a positive integer."""
    with pytest.raises(PromptError, match="max_new_tokens"):
        guarded.generate(FLAGGED, max_new_tokens=max_new_tokens)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"temperature": -0.1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
     ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")],
)
def test_bad_sampling_parameters(guarded, kwargs, message):
    """Negative (or NaN) temperature or top_p outside (0, 1] raise PromptError naming the setting."""
    with pytest.raises(PromptError, match=message):
        guarded.generate(FLAGGED, max_new_tokens=2, **kwargs)


def test_score_mismatched_counts(guarded):
    """One prompt with two continuations raises PromptError."""
    with pytest.raises(PromptError, match="1 prompts but 2 continuations"):
        guarded.score(FLAGGED, [" a", " b"])


def test_score_more_prompts_than_continuations(guarded):
    """Two prompts with one continuation must raise PromptError, not silently drop a prompt."""
    try:
        scores = guarded.score([FLAGGED, CLEAN], " a")
    except PromptError as exc:
        assert "continuations" in str(exc)
        return
    raise AssertionError(f"no PromptError: got {len(scores)} score tensor(s) for 2 prompts")


@pytest.mark.parametrize("continuations", ["", ["", " a"], [" a", ""]])
def test_score_empty_continuation(guarded, continuations):
    """An empty continuation raises PromptError naming it."""
    prompts = FLAGGED if isinstance(continuations, str) else [FLAGGED, CLEAN]
    with pytest.raises(PromptError, match="continuation .* is empty"):
        guarded.score(prompts, continuations)


def test_constructor_validation(model, tok):
    """Unknown truncation modes and slow tokenizers are refused."""
    with pytest.raises(PromptError, match="truncation"):
        GuardedModel(model, tok, truncation="right")

    class SlowTokenizer:
        is_fast = False

    with pytest.raises(PromptError, match="fast tokenizer"):
        GuardedModel(model, SlowTokenizer())


def test_max_length_override(model, tok):
    """max_length overrides the model's context length."""
    gm = GuardedModel(model, tok, max_length=8)
    assert gm.max_length == 8
    with pytest.raises(PromptError, match="context of 8"):
        gm.next_token_logits(CLEAN)


# ------------------------------------------------------------------------------------ other architectures


def test_left_padding_positions_absolute_position_model(tok):
    """With a GPT-2 style model, a left-padded unflagged row's logits equal those computed alone."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    gpt = GPT2LMHeadModel(config).eval()
    gm = GuardedModel(gpt, tok)
    batched = gm.next_token_logits([CLEAN, CLEAN_SHORT])
    torch.testing.assert_close(batched[1], gm.next_token_logits(CLEAN_SHORT)[0], atol=1e-5, rtol=0)



def test_unseeded_sampling_varies_and_seeded_sampling_repeats(guarded):
    """Without a seed, two sampled generations differ; with one, they repeat exactly."""
    kwargs = dict(max_new_tokens=12, temperature=1.5)
    runs = {tuple(guarded.generate([CLEAN, FLAGGED], **kwargs)) for _ in range(4)}
    assert len(runs) > 1
    assert guarded.generate(CLEAN, seed=3, **kwargs) == guarded.generate(CLEAN, seed=3, **kwargs)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_bad_batch_size(guarded, batch_size):
    """batch_size must be a positive integer."""
    with pytest.raises(PromptError, match="batch_size"):
        guarded.next_token_logits(CLEAN, batch_size=batch_size)


def test_no_room_for_new_tokens_is_explained(model, tok, guard):
    """Asking for more new tokens than the context holds is refused even with truncation='left'."""
    gm = GuardedModel(model, tok, guard, truncation="left")
    with pytest.raises(PromptError, match="leave no room"):
        gm.generate(CLEAN, max_new_tokens=200)


def test_flagged_prompt_with_nothing_to_corrupt_warns(model, tok):
    """A flagged prompt whose selection picks no token is reported, not silently answered in the clear."""
    guard = make_guard(model, tokens=TokenSelection("entities", ("Hermione",), fallback=None))
    gm = GuardedModel(model, tok, guard)
    with pytest.warns(UserWarning, match="answered uncorrupted"):
        decision = gm.decide(FLAGGED)[0]
    assert decision.flagged and decision.corrupted_tokens == 0


def test_prefill_inputs_match_what_generate_feeds_the_model(guarded, record_forward):
    """The public prefill batch is exactly what the prefill pass receives."""
    batch = guarded.prefill_inputs([FLAGGED, CLEAN_SHORT], reserve_tokens=NEW)
    assert batch.inputs_embeds is not None and [d.flagged for d in batch.decisions] == [True, False]
    real = batch.attention_mask[1].bool()
    assert batch.position_ids[1][real].tolist() == list(range(int(real.sum())))  # the padded row counts from 0
    guarded.generate([FLAGGED, CLEAN_SHORT], max_new_tokens=NEW)
    assert torch.equal(record_forward[0]["inputs_embeds"], batch.inputs_embeds)
    clean = guarded.prefill_inputs(CLEAN)
    assert clean.inputs_embeds is None and clean.position_ids.tolist() == [list(range(clean.input_ids.shape[1]))]


def test_score_matches_full_logits_for_mixed_lengths(guarded, model, tok):
    """Scoring keeps only the logits it needs; per-token values equal those from full logits."""
    prompts, answers = [FLAGGED, CLEAN_SHORT, CLEAN], [" Paris", " is a wizard at Hogwarts", " dog"]
    fast = guarded.score(prompts, answers)
    for prompt, answer, got in zip(prompts, answers, fast):
        alone = guarded.score(prompt, answer)[0]
        assert got.shape == alone.shape and torch.allclose(got, alone, atol=1e-5)
    assert torch.allclose(fast[2], direct_logprobs(model, tok, CLEAN, " dog"), atol=1e-5)
