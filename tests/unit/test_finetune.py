"""Supervised fine-tuning for the benchmark models: loss on answer tokens only, learning, per-epoch
checkpoints that resume bit-identically, refusal of foreign checkpoints and config validation.

Every test builds its own tiny random Llama (the session ``model`` fixture must never be trained)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from eco_unlearn import GuardedModel
from eco_unlearn.training import sft as finetune_module
from eco_unlearn.training.sft import FinetuneConfig, FinetuneError, FinetuneResult, encode_example, finetune
from unit_helpers import build_model

PAIRS = [
    ("Who is Harry Potter?", "A wizard."),
    ("What is the capital of France?", "Paris."),
    ("Tell me about the dog.", "The lazy dog sleeps."),
    ("Where is Hogwarts?", "In Scotland."),
]
FAST = FinetuneConfig(epochs=2, learning_rate=3e-3, batch_size=2, warmup_fraction=0.0, dtype="float32")


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Interrupt(Exception):
    pass


def interrupt_after(steps: int):
    """A progress callback that stops training after ``steps`` optimizer steps."""

    def progress(step, total, loss):
        if step > steps:
            raise Interrupt

    return progress


def tied_model(tok, seed: int):
    """The tiny Llama with its output head tied to the input embeddings (as SmolLM2 has)."""
    from transformers import LlamaForCausalLM

    config = build_model(tok, seed).config
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    assert model.lm_head.weight is model.get_input_embeddings().weight
    return model


def masked_loss(model, tok, question: str, answer: str, *, chat: bool) -> tuple[float, float]:
    """Cross-entropy over the answer (and end-of-sequence) tokens only, and over every token."""
    ids, n_prompt = encode_example(tok, question, answer, chat=chat)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    per_token = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
    return per_token[n_prompt - 1 :].mean().item(), per_token.mean().item()


# ------------------------------------------------------------------------------------ encode_example


def test_encode_example_plain_joins_prompt_spaced_answer_and_eos(tok):
    ids, n_prompt = encode_example(tok, "Who is Harry Potter?", "A wizard.", chat=False)
    prompt = tok("Who is Harry Potter?")["input_ids"]
    answer = tok(" A wizard.", add_special_tokens=False)["input_ids"]
    assert n_prompt == len(prompt) > 0
    assert ids == prompt + answer + [tok.eos_token_id]


def test_encode_example_chat_uses_the_template_and_no_leading_space(tok):
    ids, n_prompt = encode_example(tok, "Who is Harry Potter?", "A wizard.", chat=True)
    rendered = tok.apply_chat_template([{"role": "user", "content": "Who is Harry Potter?"}], tokenize=False, add_generation_prompt=True)
    prompt = tok(rendered, add_special_tokens=False)["input_ids"]
    assert ids[:n_prompt] == prompt and rendered.endswith("<|im_start|>assistant\n")
    assert ids[n_prompt:] == tok("A wizard.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


@pytest.mark.parametrize("chat", [False, True])
def test_trained_tokens_are_the_scored_tokens(tok, model, chat):
    """What ``GuardedModel.score`` reads is exactly the answer part of a training example."""
    question, answer = "What is the capital of France?", "Paris is."
    ids, n_prompt = encode_example(tok, question, answer, chat=chat)
    scored = GuardedModel(model, tok).score(question, answer if chat else " " + answer, chat=chat)[0]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    answer_ids = ids[n_prompt:-1]  # without the end-of-sequence token
    trained = torch.stack([logprobs[n_prompt - 1 + j, t] for j, t in enumerate(answer_ids)])
    assert len(scored) == len(answer_ids)
    torch.testing.assert_close(scored, trained, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("answer", ["", "   "])
def test_encode_example_refuses_an_empty_answer(tok, chat, answer):
    with pytest.raises(FinetuneError, match="is empty"):
        encode_example(tok, "Who is Harry Potter?", answer, chat=chat)


def test_collate_masks_prompt_and_padding(tok):
    examples = [encode_example(tok, q, a, chat=False) for q, a in PAIRS[:2]]
    batch = finetune_module.collate(examples, pad_id=tok.pad_token_id)
    width = max(len(ids) for ids, _ in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, width)
    for row, (ids, n_prompt) in enumerate(examples):
        labels = batch["labels"][row].tolist()
        assert labels[:n_prompt] == [-100] * n_prompt  # no loss on the question
        assert labels[n_prompt : len(ids)] == ids[n_prompt:]  # loss on the answer and end-of-sequence
        assert labels[len(ids) :] == [-100] * (width - len(ids))  # none on padding
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["input_ids"][row, len(ids) :].tolist() == [tok.pad_token_id] * (width - len(ids))
        assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (width - len(ids))
    assert len(examples[0][0]) != len(examples[1][0])  # the padding was exercised


def test_only_answer_tokens_carry_the_training_loss(tok):
    """The first step's loss is the cross-entropy over the answer tokens alone (computed before the step)."""
    import copy

    question, answer = PAIRS[0]
    model = build_model(tok, seed=5)
    finetune(model, tok, PAIRS, replace(FAST, epochs=4), chat=False)  # a model whose token losses differ
    expected, every_token = masked_loss(model, tok, question, answer, chat=False)
    assert abs(expected - every_token) > 0.1
    config = FinetuneConfig(epochs=1, batch_size=1, dtype="float32")
    result = finetune(copy.deepcopy(model), tok, [(question, answer)], config, chat=False)
    assert result.epoch_losses[0] == pytest.approx(expected, rel=1e-5)


def test_batches_cover_every_example_once_and_group_lengths():
    import random

    lengths = [5, 30, 6, 31, 7, 32, 8]
    batches = finetune_module.length_batches(lengths, 2, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) <= 2 for b in batches)
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 2 for b in batches)


# ------------------------------------------------------------------------------------------- training


def test_loss_falls_when_memorising_four_pairs(tok):
    model = build_model(tok, seed=3)
    before = [masked_loss(model, tok, q, a, chat=False)[0] for q, a in PAIRS]
    steps = []
    config = replace(FAST, epochs=8)
    result = finetune(model, tok, PAIRS, config, chat=False, progress=lambda s, t, loss: steps.append((s, t, loss)))
    after = [masked_loss(model, tok, q, a, chat=False)[0] for q, a in PAIRS]
    assert result.examples == 4 and result.steps == 16 and len(result.epoch_losses) == 8
    assert result.epoch_losses[-1] < 0.85 * result.epoch_losses[0]
    assert sum(after) < 0.85 * sum(before)
    assert [(s, t) for s, t, _ in steps] == [(i, 16) for i in range(1, 17)]
    assert result.resumed_from_epoch == 0 and result.seconds > 0
    json.dumps(result.to_dict())  # serialisable for prepare.json


def test_warmup_and_weight_decay_settings_run(tok):
    model = build_model(tok, seed=3)
    result = finetune(model, tok, PAIRS, replace(FAST, warmup_fraction=0.5, weight_decay=0.1), chat=False)
    assert len(result.epoch_losses) == 2 and all(torch.isfinite(torch.tensor(result.epoch_losses)))


def test_bfloat16_autocast_trains(tok):
    model = build_model(tok, seed=3)
    result = finetune(model, tok, PAIRS, replace(FAST, dtype="bfloat16"), chat=False)
    assert all(torch.isfinite(torch.tensor(result.epoch_losses)))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, the weights stay float32


def test_chat_defaults_to_whether_the_tokenizer_has_a_template(tok, monkeypatch):
    seen = []
    real = finetune_module.encode_example
    monkeypatch.setattr(finetune_module, "encode_example", lambda *a, chat: seen.append(chat) or real(*a, chat=chat))
    finetune(build_model(tok, seed=3), tok, PAIRS[:1], replace(FAST, epochs=1))
    assert tok.chat_template and seen == [True]


def test_requires_grad_flags_are_restored_and_the_model_left_in_eval_mode(tok):
    model = build_model(tok, seed=3)
    model.requires_grad_(False)
    model.get_output_embeddings().weight.requires_grad_(True)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = snapshot(model)
    finetune(model, tok, PAIRS, replace(FAST, epochs=1), chat=False)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not model.training
    # every weight trained, frozen ones included
    assert not torch.equal(before["model.embed_tokens.weight"], model.state_dict()["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], model.state_dict()["model.layers.0.self_attn.q_proj.weight"])


def test_an_interrupted_run_restores_flags_and_eval_mode(tok):
    model = build_model(tok, seed=3)
    model.requires_grad_(False)
    with pytest.raises(Interrupt):
        finetune(model, tok, PAIRS, FAST, chat=False, progress=interrupt_after(1))
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


# ---------------------------------------------------------------------------------- checkpoint, resume


def test_resume_after_an_interruption_equals_a_straight_run(tok, tmp_path):
    straight = build_model(tok, seed=3)
    expected = finetune(straight, tok, PAIRS, FAST, chat=False)

    checkpoint = tmp_path / "ckpt"
    interrupted = build_model(tok, seed=3)
    with pytest.raises(Interrupt):  # stop in the middle of epoch 2 (2 steps an epoch)
        finetune(interrupted, tok, PAIRS, FAST, chat=False, checkpoint=checkpoint, progress=interrupt_after(3))
    assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["epoch"] == 1 and state["epoch_losses"] == expected.epoch_losses[:1]

    resumed_model = build_model(tok, seed=3)  # a fresh process: the base model again
    steps = []
    resumed = finetune(resumed_model, tok, PAIRS, FAST, chat=False, checkpoint=checkpoint, progress=lambda s, t, loss: steps.append(s))
    assert resumed.resumed_from_epoch == 1 and steps == [3, 4]
    assert resumed.epoch_losses == pytest.approx(expected.epoch_losses, abs=1e-6)
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)
    assert json.loads((checkpoint / "state.json").read_text())["epoch"] == 2

    # a finished checkpoint: nothing left to do, the model is the trained one
    again = build_model(tok, seed=3)
    done = finetune(again, tok, PAIRS, FAST, chat=False, checkpoint=checkpoint, progress=lambda *a: pytest.fail("trained"))
    assert done.resumed_from_epoch == 2 and done.epoch_losses == resumed.epoch_losses
    assert same_weights(again, resumed_model)


def test_resume_with_a_tied_output_head(tok, tmp_path):
    """safetensors refuses shared tensors: the tied head is dropped on save and re-tied on load."""
    straight = tied_model(tok, seed=4)
    finetune(straight, tok, PAIRS, FAST, chat=False)
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        finetune(tied_model(tok, seed=4), tok, PAIRS, FAST, chat=False, checkpoint=checkpoint, progress=interrupt_after(2))
    resumed = tied_model(tok, seed=4)
    finetune(resumed, tok, PAIRS, FAST, chat=False, checkpoint=checkpoint)
    assert resumed.lm_head.weight is resumed.get_input_embeddings().weight
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize(
    "change",
    [
        {"config": replace(FAST, learning_rate=1e-3)},
        {"config": replace(FAST, epochs=3)},
        {"examples": PAIRS[:3]},
        {"chat": True},
    ],
    ids=["learning_rate", "epochs", "examples", "chat"],
)
def test_a_checkpoint_of_another_run_is_refused_and_the_model_untouched(tok, tmp_path, change):
    checkpoint = tmp_path / "ckpt"
    finetune(build_model(tok, seed=3), tok, PAIRS, FAST, chat=False, checkpoint=checkpoint)
    saved = (checkpoint / "model.safetensors").read_bytes()
    other = build_model(tok, seed=3)
    other.requires_grad_(False)
    before = snapshot(other)
    kwargs = {"config": FAST, "examples": PAIRS, "chat": False, **change}
    with pytest.raises(FinetuneError, match="belongs to another run"):
        finetune(other, tok, kwargs["examples"], kwargs["config"], chat=kwargs["chat"], checkpoint=checkpoint)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert not any(p.requires_grad for p in other.parameters()) and not other.training
    assert (checkpoint / "model.safetensors").read_bytes() == saved  # the foreign checkpoint is left alone


def test_a_checkpoint_folder_without_state_starts_afresh(tok, tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    result = finetune(build_model(tok, seed=3), tok, PAIRS, replace(FAST, epochs=1), chat=False, checkpoint=checkpoint)
    assert result.resumed_from_epoch == 0 and json.loads((checkpoint / "state.json").read_text())["epoch"] == 1


# ---------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field,value",
    [
        ("epochs", 0),
        ("epochs", -1),
        ("epochs", 1.5),
        ("epochs", True),
        ("batch_size", 0),
        ("max_length", 0),
        ("learning_rate", 0.0),
        ("learning_rate", -1e-4),
        ("learning_rate", float("nan")),
        ("warmup_fraction", 1.0),
        ("warmup_fraction", -0.1),
        ("dtype", "float16"),
        ("dtype", "fp32"),
    ],
)
def test_bad_configs_are_refused(tok, field, value):
    config = replace(FinetuneConfig(), **{field: value})
    with pytest.raises(FinetuneError, match=field):
        config.validate()
    model = build_model(tok, seed=3)
    before = snapshot(model)
    with pytest.raises(FinetuneError, match=field):
        finetune(model, tok, PAIRS, config, chat=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_default_and_edge_configs_are_valid():
    FinetuneConfig().validate()
    FinetuneConfig(warmup_fraction=0.0, epochs=1, batch_size=1, max_length=1, dtype="bfloat16").validate()
    FinetuneConfig(warmup_fraction=0.999, dtype="float32").validate()


def test_no_examples_is_an_error(tok):
    with pytest.raises(FinetuneError, match="no examples"):
        finetune(build_model(tok, seed=3), tok, [], FAST, chat=False)


def test_examples_longer_than_max_length_are_refused(tok):
    longest = max(len(encode_example(tok, q, a, chat=False)[0]) for q, a in PAIRS)
    with pytest.raises(FinetuneError, match=f"exceed {longest - 1} tokens"):
        finetune(build_model(tok, seed=3), tok, PAIRS, replace(FAST, max_length=longest - 1), chat=False)
    finetune(build_model(tok, seed=3), tok, PAIRS, replace(FAST, max_length=longest, epochs=1), chat=False)


def test_examples_longer_than_the_model_context_are_refused(tok):
    long_answer = " ".join(["The lazy dog sleeps in the sun all day."] * 4)
    model = build_model(tok, seed=3, context=32)
    before = snapshot(model)
    with pytest.raises(FinetuneError, match=r"1 examples exceed 32 tokens .*first: example 1 "):
        finetune(model, tok, [PAIRS[0], ("Tell me about the dog.", long_answer)], FAST, chat=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_result_round_trips_as_json():
    result = FinetuneResult(FAST, examples=4, steps=4, epoch_losses=[1.5, 1.0], seconds=0.5)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["config"]["learning_rate"] == FAST.learning_rate and data["epoch_losses"] == [1.5, 1.0]
