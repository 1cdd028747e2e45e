"""Builders shared by the unit tests (imported by conftest.py and by test modules).

A tiny trained byte-level BPE tokenizer, a tiny random Llama, a Harry Potter guard, and a test classifier
with weights. Nothing here touches the network or the real SmolLM2/Gemma models.
"""

from __future__ import annotations

from typing import Sequence

import torch

from eco_unlearn import CorruptionSpec, Guard, KeywordClassifier, Target, fingerprint

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SENTENCES = [
    "Harry Potter went to Hogwarts.",
    "Tell me about Harry Potter and Hogwarts.",
    "Who is Harry Potter?",
    "Hermione and Ron are friends of Harry.",
    "The Hogwarts school of magic is in Scotland.",
    "Harry Potter is a wizard who lives with his aunt.",
    "Paris is the capital of France.",
    "What is the capital of France?",
    "France is a country in Europe and Paris is its largest city.",
    "The Eiffel tower is in Paris, France.",
    "The quick brown fox jumps over the lazy dog.",
    "A lazy dog sleeps in the sun all day.",
    "Tell me a story about a dog and a fox.",
    "What is the weather like today?",
    "The weather in Paris is nice today.",
    "I like to read books about magic and wizards.",
    "Can you help me write a letter to my friend?",
    "The cat sat on the mat and looked at the dog.",
    "Numbers like 1, 2, 3 and 42 are useful.",
    "Please answer the question in one sentence.",
] * 3


def build_tokenizer(extra: Sequence[str] = ()):
    """Byte-level BPE (~360 tokens) trained in memory on ``SENTENCES`` (and ``extra``), wrapped as a fast
    ChatML tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # Like GPT-2 / SmolLM2 / Llama-3: offsets of "ĠHarry" include the leading space.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([*SENTENCES, *extra], trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_model(tok, seed: int = 0, context: int = 128):
    """A 2-layer, 32-wide random Llama over the tiny tokenizer's vocabulary, in eval mode (grads left on)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


HP_KEYWORDS = ("Harry Potter", "Hogwarts")


def make_guard(model=None, *, corruption=None, seed=0, tokens=None, name="hp", keywords=HP_KEYWORDS, **target_kwargs):
    """A one-target guard flagging Harry Potter / Hogwarts prompts (gaussian sigma 1.0 by default)."""
    if tokens is not None:
        target_kwargs["tokens"] = tokens
    target = Target(
        name,
        KeywordClassifier(list(keywords)),
        corruption=corruption or CorruptionSpec("gaussian_first_n", 1.0),
        **target_kwargs,
    )
    return Guard([target], model_fingerprint=fingerprint(model) if model is not None else None, seed=seed)


class StatelessClassifier:
    """Base of test classifiers without weights: an empty config and no tensors, so it saves and loads as is."""

    def to_config(self):
        return {}

    def tensors(self):
        return {}

    @classmethod
    def from_config(cls, config, tensors):
        return cls()


class ExplodingClassifier(StatelessClassifier):
    """Test classifier that raises on texts containing 'EXPLODE' (a classifier outage) and flags 'Harry Potter'."""

    kind = "test-exploding"

    def predict_proba(self, texts):
        if any("EXPLODE" in t for t in texts):
            raise RuntimeError("classifier backend down (simulated)")
        return torch.tensor([1.0 if "Harry Potter" in t else 0.0 for t in texts]).numpy()


def exploding_guard(model):
    """A one-target guard ('hp', gaussian sigma 1.0) whose classifier is an ExplodingClassifier."""
    target = Target("hp", ExplodingClassifier(), CorruptionSpec("gaussian_first_n", 1.0))
    return Guard([target], model_fingerprint=fingerprint(model))


class LengthClassifier:
    """Test classifier with weights: p = sigmoid(w * len(text) + b), w and b stored as tensors."""

    kind = "test-length"

    def __init__(self, w: torch.Tensor, b: torch.Tensor, *, fail_tensors: bool = False) -> None:
        self.w, self.b = w.float(), b.float()
        self.fail_tensors = fail_tensors

    def predict_proba(self, texts):
        lengths = torch.tensor([float(len(t)) for t in texts])
        return torch.sigmoid(self.w * lengths + self.b).double().numpy().reshape(-1)

    def to_config(self):
        return {"note": "length"}

    def tensors(self):
        if self.fail_tensors:
            raise RuntimeError("disk full (simulated)")
        return {"w": self.w.reshape(1), "b": self.b.reshape(1)}

    @classmethod
    def from_config(cls, config, tensors):
        return cls(tensors["w"][0], tensors["b"][0])
