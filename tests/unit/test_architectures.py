"""GuardedModel on tiny random-weight models of many architectures that transformers ships.

Each architecture is built in memory from its config (2 layers, 32 wide, the tiny tokenizer's
vocabulary, a 128-token context, seeded random float32 weights, eval mode). Sliding windows and
attention chunks smaller than the prompts, ALiBi, state-space and recurrent layers are chosen on purpose:
they are where left padding can go wrong. Per architecture:

* a mixed, left-padded batch generates, for its unflagged rows, exactly what the bare model generates
  from the same batch, and generate's prefill sees the corrupted embeddings;
* prefill embeddings are corrupted on the flagged row's selected tokens only;
* scores and next-token logits of an unflagged prompt equal the bare model's, alone and in a mixed
  batch next to a longer flagged prompt; a flagged prompt's differ;
* no weight changes.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
import transformers

from eco_unlearn import GuardedModel, ModelError
from unit_helpers import make_guard

# A FutureWarning here means GuardedModel passes a model something it deprecates (as position_ids to BLOOM).
pytestmark = pytest.mark.filterwarnings("error::FutureWarning")

FLAGGED = "Tell me about Harry Potter and Hogwarts."
CLEAN = "Paris is nice"  # shorter than FLAGGED: left-padded next to it
CLEAN_LONG = "The quick brown fox jumps over the lazy dog."  # longer than FLAGGED: pads the flagged row
BATCH = [FLAGGED, CLEAN, CLEAN_LONG]
UNFLAGGED_ROWS = (1, 2)
CONTINUATIONS = [" a wizard at school", " and sunny", " again and again"]
NEW = 4
VOCAB = "vocab"  # stands for the tiny tokenizer's vocabulary size in config arguments

_ATTENTION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128)
_LLAMA = dict(_ATTENTION, intermediate_size=64, num_key_value_heads=2)
_GPT = dict(n_embd=32, n_layer=2, n_head=4, n_positions=128)
_MOE = dict(num_experts=4, num_experts_per_tok=2)
_EXPERTS = dict(num_local_experts=4, num_experts_per_tok=2)
_TWO_KINDS = dict(sliding_window=4, layer_types=["sliding_attention", "full_attention"])
_GEMMA = dict(_LLAMA, head_dim=8, query_pre_attn_scalar=8)
_PER_LAYER = dict(vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=8)  # per-layer token embeddings
_DEEPSEEK = dict(moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
                 first_k_dense_replace=1)

# name: (config class, model class, config arguments)
ARCHITECTURES = {
    # dense attention, rotary positions
    "llama": ("LlamaConfig", "LlamaForCausalLM", _LLAMA),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_LLAMA, sliding_window=4)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _LLAMA),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_LLAMA, head_dim=8)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(_LLAMA, head_dim=8)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(_GEMMA, sliding_window=4)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(_GEMMA, **_TWO_KINDS)),
    "gemma3n": ("Gemma3nTextConfig", "Gemma3nForCausalLM", dict(
        _LLAMA, head_dim=8, **_PER_LAYER, intermediate_size=[64, 64], laurel_rank=4, altup_num_inputs=2,
        num_kv_shared_layers=0, activation_sparsity_pattern=[0.0, 0.0], **_TWO_KINDS)),
    "gemma4": ("Gemma4TextConfig", "Gemma4ForCausalLM", dict(
        _LLAMA, head_dim=8, global_head_dim=8, **_PER_LAYER, **_TWO_KINDS)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", _LLAMA),
    "phi": ("PhiConfig", "PhiForCausalLM", dict(_LLAMA, partial_rotary_factor=0.5)),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", dict(_LLAMA, partial_rotary_factor=0.5)),
    "starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM", dict(_LLAMA, sliding_window=4)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(_GPT, rotary_dim=4)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(_ATTENTION, intermediate_size=64, rotary_pct=0.5)),
    "falcon": ("FalconConfig", "FalconForCausalLM", _ATTENTION),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", _LLAMA),
    "cohere": ("CohereConfig", "CohereForCausalLM", dict(_LLAMA, logit_scale=0.5)),
    "cohere2": ("Cohere2Config", "Cohere2ForCausalLM", dict(_LLAMA, **_TWO_KINDS)),
    "granite": ("GraniteConfig", "GraniteForCausalLM", dict(
        _LLAMA, embedding_multiplier=3.0, logits_scaling=2.0, residual_multiplier=0.5, attention_multiplier=0.25)),
    # learned absolute positions
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", _GPT),
    "gpt_bigcode": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM", _GPT),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM", dict(
        hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128,
        attention_types=[[["global", "local"], 1]], window_size=4)),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(_ATTENTION, ffn_dim=64, word_embed_proj_dim=16)),
    "ctrl": ("CTRLConfig", "CTRLLMHeadModel", dict(_GPT, dff=64)),  # generate() takes no inputs_embeds
    # ALiBi
    "falcon_alibi": ("FalconConfig", "FalconForCausalLM", dict(_ATTENTION, alibi=True)),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(hidden_size=32, n_layer=2, n_head=4)),  # no position_ids
    "mpt": ("MptConfig", "MptForCausalLM", dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=128)),
    # mixture of experts
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(_LLAMA, **_EXPERTS)),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", dict(
        _LLAMA, **_MOE, moe_intermediate_size=16, shared_expert_intermediate_size=32)),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM", dict(_LLAMA, **_MOE)),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM", dict(_LLAMA, head_dim=8, **_EXPERTS, **_TWO_KINDS)),
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM", dict(
        _LLAMA, num_key_value_heads=4, **_DEEPSEEK, n_shared_experts=1, kv_lora_rank=16, q_lora_rank=16,
        qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8)),
    "llama4": ("Llama4TextConfig", "Llama4ForCausalLM", dict(
        _LLAMA, head_dim=8, intermediate_size_mlp=64, num_local_experts=2, num_experts_per_tok=1,
        attention_chunk_size=4, moe_layers=[1], no_rope_layers=[1, 0])),
    # state-space, linear-attention, convolution and recurrent layers
    "mamba": ("MambaConfig", "MambaForCausalLM", dict(
        hidden_size=32, state_size=4, num_hidden_layers=2, intermediate_size=64, conv_kernel=4, time_step_rank=4)),
    "mamba2": ("Mamba2Config", "Mamba2ForCausalLM", dict(
        hidden_size=32, state_size=4, num_hidden_layers=2, num_heads=4, head_dim=16, n_groups=1, chunk_size=8)),
    "jamba": ("JambaConfig", "JambaForCausalLM", dict(
        _LLAMA, num_experts=2, num_experts_per_tok=1, expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2,
        attn_layer_offset=1, mamba_d_state=4, mamba_dt_rank=4, mamba_expand=2, use_mamba_kernels=False)),
    "bamba": ("BambaConfig", "BambaForCausalLM", dict(  # generate() takes no inputs_embeds
        _LLAMA, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=4, mamba_chunk_size=8, attn_layer_indices=[1])),
    "falcon_h1": ("FalconH1Config", "FalconH1ForCausalLM", dict(  # generate() takes no inputs_embeds
        _LLAMA, head_dim=8, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8, mamba_d_state=4, mamba_chunk_size=8)),
    "qwen3_next": ("Qwen3NextConfig", "Qwen3NextForCausalLM", dict(
        _LLAMA, head_dim=8, **_MOE, moe_intermediate_size=16, shared_expert_intermediate_size=16,
        linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
        layer_types=["linear_attention", "full_attention"])),
    "lfm2": ("Lfm2Config", "Lfm2ForCausalLM", dict(_LLAMA, layer_types=["conv", "full_attention"])),
    "recurrent_gemma": ("RecurrentGemmaConfig", "RecurrentGemmaForCausalLM", dict(
        _LLAMA, head_dim=8, lru_width=32, attention_window_size=4, block_types=["recurrent", "attention"])),
    "rwkv": ("RwkvConfig", "RwkvForCausalLM", dict(
        hidden_size=32, num_hidden_layers=2, attention_hidden_size=32, intermediate_size=64, context_length=128)),
}

SKIPPED = {
    "rwkv": "transformers' RWKV ignores the attention mask (a left-padded row's next-token logits differ from the "
    "same prompt's alone by ~1.0) and its batched generate lets rows interact (changing one row's prompt changes "
    "the other rows' later scores), so no batch of it can match the bare model row by row",
}
# Architectures whose outputs change under left padding in plain transformers (padding tokens leak into a
# recurrent state): their rows are compared with the bare model's under the same batch only, not alone.
PADDING_SENSITIVE = {"recurrent_gemma"}


def build(tok, name: str, seed: int = 0):
    """A tiny random model of architecture ``name``, in eval mode. Parameters that initialise to all zeros
    (gates, layer scales, biases) get small random values, so no branch of the model is switched off."""
    config_class, model_class, kwargs = ARCHITECTURES[name]
    if not hasattr(transformers, model_class):
        pytest.skip(f"transformers {transformers.__version__} has no {model_class}")
    kwargs = {k: len(tok) if v == VOCAB else v for k, v in kwargs.items()}
    config = getattr(transformers, config_class)(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, **kwargs,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(0.0, 0.1)
    return model


def weight_hashes(model) -> dict[str, str]:
    return {
        name: hashlib.sha256(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        for name, t in model.state_dict().items()
    }


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.skip(reason=SKIPPED[n])) if n in SKIPPED else n for n in ARCHITECTURES],
)
def arch(request, tok):
    model = build(tok, request.param)
    return model, weight_hashes(model), request.param in PADDING_SENSITIVE


@pytest.fixture
def model(arch):
    return arch[0]


@pytest.fixture
def padding_sensitive(arch):
    return arch[2]


@pytest.fixture
def guarded(model, tok):
    return GuardedModel(model, tok, make_guard(model))


@pytest.fixture
def bare(model, tok):
    return GuardedModel(model, tok)


def assert_differs(got, bare):
    """``got`` is far from ``bare``: beyond the 1e-5 that counts as equal, by ten times at least."""
    assert (got - bare).abs().max() > 1e-4


def test_prompts_make_a_mixed_left_padded_batch(tok):
    """Preconditions: the flagged prompt is padded next to CLEAN_LONG and pads CLEAN."""
    lengths = [len(tok(p)["input_ids"]) for p in BATCH]
    assert lengths[1] < lengths[0] < lengths[2]


def test_prefill_corrupts_flagged_row_only(guarded, model):
    """The prefill batch: left-padded, positions counted from each row's first token, the flagged row's
    embeddings corrupted on its selected tokens only, every other embedding the model's own."""
    batch = guarded.prefill_inputs(BATCH, reserve_tokens=NEW)
    assert [d.flagged for d in batch.decisions] == [True, False, False]
    assert batch.inputs_embeds is not None
    with torch.no_grad():
        clean = model.get_input_embeddings()(batch.input_ids)
    changed = (batch.inputs_embeds != clean).any(-1)
    real = batch.attention_mask.bool()
    n, width = int(real[0].sum()), batch.input_ids.shape[1]
    assert batch.decisions[0].corrupted_tokens == n - 1  # all_but_last
    assert changed[0].tolist() == [False] * (width - n) + [True] * (n - 1) + [False]
    assert not changed[1:].any()
    for b in range(len(BATCH)):
        assert batch.position_ids[b][real[b]].tolist() == list(range(int(real[b].sum())))
    assert guarded.prefill_inputs(CLEAN).inputs_embeds is None


def test_generate_mixed_batch_unflagged_rows_match_bare(guarded, bare, model, tok):
    """Greedy generation of a left-padded mixed batch: the unflagged rows generate what the bare model
    generates from the same batch (plain model.generate on its input_ids, and GuardedModel without guard)."""
    together, decisions = guarded.generate(BATCH, max_new_tokens=NEW, return_decisions=True)
    assert [d.flagged for d in decisions] == [True, False, False]
    batch = bare.prefill_inputs(BATCH, reserve_tokens=NEW)
    with torch.no_grad():
        out = model.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=NEW,
            do_sample=False, pad_token_id=tok.pad_token_id,
        )
    direct = tok.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
    assert bare.generate(BATCH, max_new_tokens=NEW) == direct
    for b in UNFLAGGED_ROWS:
        assert together[b] == direct[b]


def prefill_logits(model, run) -> torch.Tensor:
    """The last-position logits of the first forward pass of ``model`` while ``run()`` runs."""
    captured: list[torch.Tensor] = []
    handle = model.register_forward_hook(
        lambda module, args, output: None if captured else captured.append(output.logits[:, -1].float())
    )
    try:
        run()
    finally:
        handle.remove()
    return captured[0]


def test_generate_prefill_sees_corrupted_embeddings(guarded, bare, model):
    """generate's prefill pass sees the corrupted embeddings, whichever way the model takes them: alone, a
    flagged prompt's prefill logits are next_token_logits'; in the mixed batch, only the flagged row's
    differ from the bare model's generate (compared under the same batch, as generate positions the rows)."""
    alone = prefill_logits(model, lambda: guarded.generate(FLAGGED, max_new_tokens=1))
    torch.testing.assert_close(alone, guarded.next_token_logits(FLAGGED), atol=1e-5, rtol=0)
    mixed = prefill_logits(model, lambda: guarded.generate(BATCH, max_new_tokens=1))
    bare_mixed = prefill_logits(model, lambda: bare.generate(BATCH, max_new_tokens=1))
    for b in UNFLAGGED_ROWS:
        torch.testing.assert_close(mixed[b], bare_mixed[b], atol=1e-5, rtol=0)
    assert_differs(mixed[0], bare_mixed[0])


def test_next_token_logits_unflagged_match_bare(guarded, bare, padding_sensitive):
    """An unflagged prompt's logits equal the bare model's alone (bit for bit) and next to a longer,
    flagged prompt; the flagged prompt's logits differ."""
    alone = bare.next_token_logits(CLEAN)
    assert torch.equal(guarded.next_token_logits(CLEAN), alone)
    mixed = guarded.next_token_logits(BATCH)
    bare_mixed = bare.next_token_logits(BATCH)
    assert mixed.shape == (len(BATCH), alone.shape[1])
    for b in UNFLAGGED_ROWS:
        torch.testing.assert_close(mixed[b], bare_mixed[b], atol=1e-5, rtol=0)
    if not padding_sensitive:
        torch.testing.assert_close(mixed[1], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed[2], bare.next_token_logits(CLEAN_LONG)[0], atol=1e-5, rtol=0)
    assert_differs(mixed[0], bare_mixed[0])
    assert_differs(guarded.next_token_logits(FLAGGED)[0], bare.next_token_logits(FLAGGED)[0])


def test_score_unflagged_match_bare(guarded, bare, padding_sensitive):
    """An unflagged prompt's continuation log-probabilities equal the bare model's alone (bit for bit)
    and in a mixed batch; the flagged prompt's differ."""
    alone = bare.score(CLEAN, CONTINUATIONS[1])[0]
    assert torch.equal(guarded.score(CLEAN, CONTINUATIONS[1])[0], alone)
    mixed = guarded.score(BATCH, CONTINUATIONS)
    bare_mixed = bare.score(BATCH, CONTINUATIONS)
    for b in UNFLAGGED_ROWS:
        torch.testing.assert_close(mixed[b], bare_mixed[b], atol=1e-5, rtol=0)
    if not padding_sensitive:
        torch.testing.assert_close(mixed[1], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed[2], bare.score(CLEAN_LONG, CONTINUATIONS[2])[0], atol=1e-5, rtol=0)
    assert mixed[0].shape == bare_mixed[0].shape
    assert_differs(mixed[0], bare_mixed[0])


def test_weights_unchanged(arch, guarded):
    """No call changes any tensor of the state dict: checked against hashes taken when the model was built,
    after the greedy generate, score and next_token_logits calls of the tests above and a sampled generate."""
    model, built, _ = arch
    guarded.generate(BATCH, max_new_tokens=NEW, temperature=0.8, seed=1)
    assert weight_hashes(model) == built


def test_generate_fails_closed_when_the_prefill_is_not_embedded(tok, monkeypatch):
    """A model whose generate() refuses inputs_embeds gets them through its embedding layer; if that layer
    never embeds the prompts, generate raises instead of answering a flagged prompt uncorrupted."""
    model = build(tok, "ctrl")
    monkeypatch.setattr(model, "get_input_embeddings", lambda layer=copy.deepcopy(model.get_input_embeddings()): layer)
    guarded = GuardedModel(model, tok, make_guard(model))
    with pytest.raises(ModelError, match="none could be corrupted"):
        guarded.generate(BATCH, max_new_tokens=2)
    assert len(guarded.generate(CLEAN, max_new_tokens=2)) == 1  # nothing to corrupt: nothing to check
