"""Session fixtures for the unit tests: a tiny trained BPE tokenizer and a tiny random Llama model.

Nothing here touches the network or the real SmolLM2/Gemma models; everything is built in memory in
well under a second and shared across the session. Tests must never modify the shared model (its
weights are checked for bit-identity in test_guarded.py); hooks are always removed after use.
"""

from __future__ import annotations

import os

# No hub access from unit tests, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from eco_unlearn import GuardedModel  # noqa: E402
from eco_unlearn.classifier import CLASSIFIERS
from unit_helpers import ExplodingClassifier, LengthClassifier, build_model, build_tokenizer, make_guard  # noqa: E402


@pytest.fixture(scope="session")
def tok():
    tokenizer = build_tokenizer()
    assert tokenizer.is_fast
    return tokenizer


@pytest.fixture(scope="session")
def model(tok):
    return build_model(tok, seed=0)


@pytest.fixture(scope="session")
def other_model(tok):
    """Same architecture, different random weights: a different fingerprint."""
    return build_model(tok, seed=1)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory, model, tok):
    """The tiny model and tokenizer saved in Hugging Face format, for load_model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def guard(model):
    """Keyword guard on 'Harry Potter' / 'Hogwarts', gaussian sigma 1.0 on all_but_last, for `model`."""
    return make_guard(model)


@pytest.fixture
def guarded(model, tok, guard):
    return GuardedModel(model, tok, guard)


@pytest.fixture
def bare(model, tok):
    """The same model and tokenizer without a guard."""
    return GuardedModel(model, tok)


@pytest.fixture
def length_classifier_kind():
    """Register LengthClassifier for the duration of one test, then restore CLASSIFIERS."""
    assert LengthClassifier.kind not in CLASSIFIERS
    with CLASSIFIERS.override(LengthClassifier.kind, LengthClassifier):
        yield LengthClassifier


@pytest.fixture
def exploding_kind():
    """Register ExplodingClassifier for the duration of one test, then restore CLASSIFIERS."""
    assert ExplodingClassifier.kind not in CLASSIFIERS
    with CLASSIFIERS.override(ExplodingClassifier.kind, ExplodingClassifier):
        yield ExplodingClassifier


@pytest.fixture
def record_forward(model):
    """Record every forward call of the tiny model: a list of dicts with detached clones of
    ``input_ids``, ``inputs_embeds`` (None when not passed) and the output ``logits``."""
    calls: list[dict] = []

    def pre_hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        calls.append(
            {
                "input_ids": None if ids is None else ids.detach().clone(),
                "inputs_embeds": None if embeds is None else embeds.detach().clone(),
            }
        )

    def post_hook(module, args, kwargs, output):
        calls[-1]["logits"] = output.logits.detach().clone()

    handles = [
        model.register_forward_pre_hook(pre_hook, with_kwargs=True),
        model.register_forward_hook(post_hook, with_kwargs=True),
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture
def encodings(monkeypatch):
    """Record, from here on and in every thread, each prompt rendered (``render_prompt``) and each text the
    tokenizers are called on: ``{"rendered": [prompt, ...], "tokenized": [text, ...]}``."""
    from transformers import PreTrainedTokenizerBase

    import eco_unlearn.runtime.prompts as prompts

    calls: dict[str, list] = {"rendered": [], "tokenized": []}
    render, tokenize = prompts.render_prompt, PreTrainedTokenizerBase.__call__

    def counting_render(prompt, *args, **kwargs):
        calls["rendered"].append(prompt)
        return render(prompt, *args, **kwargs)

    def counting_tokenize(self, *args, **kwargs):
        calls["tokenized"].append(args[0] if args else kwargs.get("text"))
        return tokenize(self, *args, **kwargs)

    monkeypatch.setattr(prompts, "render_prompt", counting_render)
    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting_tokenize)
    return calls
