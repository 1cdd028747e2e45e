"""Only the input-embedding layer of a causal LM, with its config and tokenizer: what a gateway needs to
compute corrupted prompt embeddings without loading the model's other weights.

The layer is built as the model itself builds it (so a scaled embedding such as Gemma's stays scaled),
on the meta device, and only the embedding matrix is read from the checkpoint with ``safe_open``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..models import DTYPES, EMBEDDED_MODELS, resolve_embedded

__all__ = ["EmbeddingOnlyModel", "load_embedding_only"]


class EmbeddingOnlyModel(torch.nn.Module):
    """A stand-in for a causal LM that has its config and input embeddings and nothing else.

    ``GuardedModel.prefill_inputs``, ``fingerprint`` and ``Guard.check_model`` work on it; running the
    model (``forward``, ``generate``) does not.
    """

    def __init__(self, config: Any, embeddings: torch.nn.Module) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embeddings

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed_tokens

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModelError("this is only the embedding layer of the model; it cannot run the model itself")


def _folder(name_or_path: str | os.PathLike, cache: str | os.PathLike | None) -> Path:
    name = str(name_or_path)
    if name in EMBEDDED_MODELS:
        return resolve_embedded(name, cache)
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{name!r} is not a local Hugging Face model folder (no config.json); the gateway reads the embedding "
            "matrix from local files: download the model's config, tokenizer and safetensors index first"
        )
    return path


def _embedding_file(folder: Path, name: str) -> Path:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        key = next((k for k in (name, *_aliases(name)) if k in weight_map), None)
        if key is None:
            raise ModelError(f"{index} lists no tensor {name!r}")
        return folder / weight_map[key]
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ModelError(f"no model.safetensors or model.safetensors.index.json in {folder}")
    return single


def _aliases(name: str) -> list[str]:
    """Other names the same tensor goes by in checkpoints (with or without the base model's prefix)."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts) - 1)]


def load_embedding_only(
    name_or_path: str | os.PathLike, *, dtype: str | torch.dtype = "float32", cache: str | os.PathLike | None = None
) -> tuple[EmbeddingOnlyModel, Any]:
    """``(EmbeddingOnlyModel, tokenizer)`` for an embedded default or a local model folder.

    Only the input-embedding tensor is read from the safetensors checkpoint.
    """
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str):
        dtype = DTYPES.get(dtype, dtype)
    if dtype not in DTYPES.values():
        raise ModelError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    folder = _folder(name_or_path, cache)
    try:
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with init_empty_weights(include_buffers=False):  # parameters on meta, buffers (embedding scales) real
            skeleton = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read the model {str(name_or_path)!r}: {str(exc).splitlines()[0]}") from exc
    embeddings = skeleton.get_input_embeddings()
    name = next((n for n, p in skeleton.named_parameters() if p is embeddings.weight), None)
    if name is None:
        raise ModelError(f"cannot find the input-embedding weight of {str(name_or_path)!r}")
    path = _embedding_file(folder, name)
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            key = next((k for k in (name, *_aliases(name)) if k in keys), None)
            if key is None:
                raise ModelError(f"{path} holds no tensor {name!r}")
            weight = handle.get_tensor(key)
    except ModelError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"cannot read the embedding matrix from {path}: {exc}") from exc
    embeddings.weight = torch.nn.Parameter(weight.to(dtype), requires_grad=False)
    model = EmbeddingOnlyModel(config, embeddings).eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
