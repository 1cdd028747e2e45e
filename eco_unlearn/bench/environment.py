"""What a benchmark ran on, saved next to its numbers so a figure can be traced to its setup."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from .. import __version__
from ..precision import fast_bfloat16


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere): timings taken on
    different CPUs are not comparable, and bfloat16 autocast is fast only on some."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(**extra: Any) -> dict[str, Any]:
    """Versions, the CPU, its native bfloat16 support (what ``dtype="auto"`` picks), CPU count, torch threads
    and the time, plus ``extra`` fields."""
    return {
        "eco_unlearn": __version__,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_bfloat16": fast_bfloat16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages, rounded: how busy it was when a time was taken."""
    return [round(x, 2) for x in os.getloadavg()]
