"""Tests of eco_unlearn.models: fingerprints, load_model on local folders and its errors."""

from __future__ import annotations

import copy

import pytest
import torch

from eco_unlearn.errors import ModelError
from eco_unlearn.models import ModelFingerprint, cache_dir, context_length, fingerprint, load_model


def test_fingerprint_fields_and_stability(model):
    """The fingerprint names architecture and shapes and is the same on every call."""
    fp = fingerprint(model)
    assert fp.architecture == "LlamaForCausalLM"
    assert fp.vocab_size == model.config.vocab_size
    assert fp.hidden_size == 32
    assert len(fp.embedding_sha256) == 64 and int(fp.embedding_sha256, 16) >= 0
    assert fingerprint(model) == fp


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fingerprint_matches_lower_precision_copies(model, dtype):
    """bfloat16 and float16 copies of the same weights count as the same model, both ways."""
    low = fingerprint(copy.deepcopy(model).to(dtype))
    assert fingerprint(model).differences(low) == []
    assert low.differences(fingerprint(model)) == []


def test_fingerprint_float16_and_bfloat16_copies_of_one_checkpoint_match(model):
    """A guard fitted on a bfloat16 load attaches to a float16 load of the same float32 weights only
    if the fp16 hash of the guard's (bf16) weights agrees; it is recorded, so the float32 original matches both."""
    full = fingerprint(model)
    assert full.embedding_sha256_fp16 and full.embedding_sha256_fp16 != full.embedding_sha256


def test_fingerprint_changes_with_one_embedding_entry(model):
    """Changing a single embedding entry changes the hash (and nothing else)."""
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.get_input_embeddings().weight[7, 3] += 1.0
    a, b = fingerprint(model), fingerprint(changed)
    assert a.embedding_sha256 != b.embedding_sha256 and a.embedding_sha256_fp16 != b.embedding_sha256_fp16
    assert a.differences(b) == [f"embedding weights: sha256 {a.embedding_sha256[:12]}... != {b.embedding_sha256[:12]}..."]


def test_fingerprint_differs_between_models(model, other_model):
    """Two random models of the same shape differ only in the embedding hash."""
    diffs = fingerprint(model).differences(fingerprint(other_model))
    assert len(diffs) == 1 and diffs[0].startswith("embedding weights:")


def test_fingerprint_falls_back_to_class_name(model):
    """Without config.architectures, the class name is the architecture."""
    clone = copy.deepcopy(model)
    clone.config.architectures = None
    assert fingerprint(clone).architecture == "LlamaForCausalLM"


def test_fingerprint_differences_and_dict_round_trip():
    """differences() lists each differing field; to_dict/from_dict round-trip."""
    a = ModelFingerprint("LlamaForCausalLM", 100, 32, "aa")
    b = ModelFingerprint("GemmaForCausalLM", 100, 64, "aa")
    assert a.differences(a) == []
    assert a.differences(b) == [
        "architecture: 'LlamaForCausalLM' != 'GemmaForCausalLM'",
        "hidden_size: 32 != 64",
    ]
    assert ModelFingerprint.from_dict({**a.to_dict(), "extra": 1}) == a
    with pytest.raises(KeyError):
        ModelFingerprint.from_dict({"architecture": "x"})


def test_context_length(model):
    """The context length comes from max_position_embeddings."""
    assert context_length(model) == 128


def test_cache_dir_precedence(monkeypatch, tmp_path):
    """cache_dir: explicit override, then $ECO_UNLEARN_CACHE, then ~/.cache/eco-unlearn."""
    monkeypatch.setenv("ECO_UNLEARN_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "x") == tmp_path / "x"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("ECO_UNLEARN_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "eco-unlearn")


@pytest.mark.parametrize("name", ["no-such-model", "./does/not/exist", "a/b/c"])
def test_load_model_unknown_name(name, monkeypatch, tmp_path):
    """Names that are neither embedded, nor a folder, nor a hub id raise ModelError listing the options."""
    monkeypatch.setenv("ECO_UNLEARN_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="unknown model.*smollm2"):
        load_model(name)


def test_load_model_folder_without_config(tmp_path):
    """A folder without config.json is not a model folder."""
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path)


def test_load_model_unknown_dtype(saved_model_dir):
    """An unknown dtype string raises ModelError."""
    with pytest.raises(ModelError, match="unsupported dtype 'float8'"):
        load_model(saved_model_dir, dtype="float8")


def test_load_model_broken_folder(tmp_path):
    """A folder with an unreadable config raises ModelError, not a raw transformers error."""
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(tmp_path)


def test_load_model_local_folder(saved_model_dir, model, tok):
    """load_model on a saved tiny model returns it frozen, in eval mode, with identical weights."""
    loaded, loaded_tok = load_model(saved_model_dir)
    assert not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    assert loaded.dtype == torch.float32
    assert fingerprint(loaded) == fingerprint(model)
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
    assert loaded_tok.is_fast
    assert loaded_tok.pad_token_id == tok.pad_token_id
    assert loaded_tok("Harry Potter")["input_ids"] == tok("Harry Potter")["input_ids"]


def test_load_model_bfloat16(saved_model_dir, model):
    """dtype='bfloat16' loads bf16 weights with the same fingerprint as the float32 model."""
    loaded, _ = load_model(saved_model_dir, dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert fingerprint(loaded).differences(fingerprint(model)) == []


@pytest.mark.parametrize("device", ["nonsense", "cuda:0"])
def test_load_model_bad_device(saved_model_dir, device):
    """An invalid device, or a GPU this machine lacks, raises ModelError instead of a torch traceback."""
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="device"):
        load_model(saved_model_dir, device=device)


def test_fingerprint_from_dict_optional_and_required_fields(model):
    """Fields with defaults may be absent (older guards); required ones may not."""
    data = fingerprint(model).to_dict()
    del data["embedding_sha256_fp16"]
    assert ModelFingerprint.from_dict(data).embedding_sha256_fp16 == ""
    del data["embedding_sha256"]
    with pytest.raises(KeyError):
        ModelFingerprint.from_dict(data)
