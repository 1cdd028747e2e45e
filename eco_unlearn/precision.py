"""The float type forward passes run in, one rule for training, scoring and encoders: ``"auto"`` is bfloat16
autocast where the hardware computes it natively (CUDA with bfloat16, CPUs with AMX or AVX512-BF16, where it
is two to three times faster than float32) and float32 elsewhere (on other CPUs bfloat16 is emulated, and
slower)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["DTYPES", "autocast", "fast_bfloat16", "use_bfloat16"]

DTYPES = ("auto", "float32", "bfloat16")


def fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bfloat16(dtype: str, device: torch.device | str) -> bool:
    """Whether ``dtype`` (one of ``DTYPES``) means bfloat16 autocast on ``device``."""
    device = torch.device(device)
    if dtype == "auto":
        return torch.cuda.is_bf16_supported() if device.type == "cuda" else fast_bfloat16()
    return dtype == "bfloat16"


@contextmanager
def autocast(dtype: str, device: torch.device | str) -> Iterator[bool]:
    """Run the block under bfloat16 autocast when ``dtype`` means it on ``device``; yields whether it does."""
    device = torch.device(device)
    enabled = use_bfloat16(dtype, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        yield enabled
