"""Overhead of the guard: latency and peak memory of guarded vs bare generation, measured side by side.

"Bare" is the plain Hugging Face path (tokenize with left padding, ``model.generate``). "Guarded" is
``GuardedModel.generate`` with the guard attached: prompt rendering, classification, token selection
and, for flagged prompts, the corrupted-embedding prefill. Bare and guarded runs alternate within each
repeat so machine noise hits both alike; the figures that matter are the ratios. Each repeat's adjacent
pair gives a paired ratio (its median and interquartile range are reported), and the guard's own added
work (everything before ``model.generate``) is also timed alone over many repeats: on a noisy machine its
share of the bare latency is the steadiest estimate of the overhead.

Peak memory on CPU is the peak resident set size of a fresh worker process per mode (bare, guarded)
running the same workload, since CPU allocations cannot be attributed from inside one process.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ...demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS, keyword_demo_guard
from ...errors import ParallelError, RunFailure
from ...runtime.guarded import GuardedModel
from ...models import fingerprint, load_model
from ..environment import environment
from ..saving import SavedReport

__all__ = ["OverheadConfig", "OverheadReport", "OverheadRow", "run_overhead"]

Progress = Callable[[str, int, int], None]


@dataclass
class OverheadConfig:
    model: str = "smollm2"
    batch_sizes: tuple[int, ...] = (1, 8)
    new_tokens: int = 64
    repeats: int = 5
    chat: bool = True
    memory: bool = True
    threads: int | None = None


@dataclass
class OverheadRow:
    batch_size: int
    flagged: bool
    bare_median_s: float
    guarded_median_s: float
    latency_ratio: float
    paired_ratio_median: float
    paired_ratio_iqr: tuple[float, float]
    guard_work_ms: float
    guard_work_fraction: float
    bare_peak_mib: float | None = None
    guarded_peak_mib: float | None = None
    memory_ratio: float | None = None
    bare_times_s: list[float] = field(default_factory=list)
    guarded_times_s: list[float] = field(default_factory=list)


@dataclass
class OverheadReport(SavedReport):
    benchmark: ClassVar[str | None] = "overhead"

    config: OverheadConfig
    rows: list[OverheadRow]
    environment: dict[str, Any]


def _prompts(flagged: bool, batch_size: int) -> list[str]:
    pool = DEMO_FORGET_PROMPTS if flagged else DEMO_CLEAN_PROMPTS
    return [pool[i % len(pool)] for i in range(batch_size)]


class _Runner:
    """Runs one workload (batch size, flagged or not) bare or guarded, forcing exactly ``new_tokens``."""

    def __init__(self, model: Any, tokenizer: Any, config: OverheadConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.guarded = GuardedModel(model, tokenizer, keyword_demo_guard(model))

    def _texts(self, prompts: list[str]) -> list[str]:
        if not self.config.chat:
            return prompts
        return [
            self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]

    @torch.no_grad()
    def guard_work(self, batch_size: int, flagged: bool, repeats: int = 50) -> float:
        """Median seconds of the guard's own work for one batch: render, classify, tokenize, select, corrupt."""
        prompts = _prompts(flagged, batch_size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.guarded.prefill_inputs(prompts, chat=self.config.chat, reserve_tokens=self.config.new_tokens)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    @torch.no_grad()
    def __call__(self, mode: str, batch_size: int, flagged: bool) -> float:
        prompts = _prompts(flagged, batch_size)
        n = self.config.new_tokens
        start = time.perf_counter()
        if mode == "bare":
            enc = self.tokenizer(
                self._texts(prompts), return_tensors="pt", padding=True, padding_side="left",
                add_special_tokens=not self.config.chat,
            )
            self.model.generate(
                **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        else:
            self.guarded.generate(
                prompts, chat=self.config.chat, max_new_tokens=n, min_new_tokens=n, batch_size=batch_size
            )
        return time.perf_counter() - start


def _workloads(config: OverheadConfig) -> list[tuple[int, bool]]:
    return [(b, f) for b in config.batch_sizes for f in (False, True)]


def _peak_memory(config: OverheadConfig, mode: str) -> dict[str, float]:
    """Peak RSS (MiB) per workload, from a fresh worker process running ``mode``."""
    args = [sys.executable, "-m", "eco_unlearn.bench.overhead.benchmark", mode, json.dumps(asdict(config))]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ParallelError(f"memory worker ({mode}) failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RunFailure("cannot read peak RSS from /proc/self/status")


def _reset_rss_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def _memory_worker(mode: str, config: OverheadConfig) -> dict[str, float]:
    if config.threads:
        torch.set_num_threads(config.threads)
    model, tokenizer = load_model(config.model)
    runner = _Runner(model, tokenizer, config)
    peaks = {}
    for batch_size, flagged in _workloads(config):
        _reset_rss_peak()
        runner(mode, batch_size, flagged)
        peaks[f"{batch_size}:{int(flagged)}"] = _rss_peak_mib()
    return peaks


def run_overhead(config: OverheadConfig, progress: Progress | None = None) -> OverheadReport:
    """Measure latency (and, on Linux CPUs, peak memory) of guarded vs bare generation."""
    if config.threads:
        torch.set_num_threads(config.threads)
    model, tokenizer = load_model(config.model)
    runner = _Runner(model, tokenizer, config)
    workloads = _workloads(config)
    total = len(workloads) * (config.repeats + 1) + (2 if config.memory else 0)
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(what, done, total)

    rows = []
    for batch_size, flagged in workloads:
        times: dict[str, list[float]] = {"bare": [], "guarded": []}
        for repeat in range(config.repeats + 1):  # repeat 0 warms up
            order = ("bare", "guarded") if repeat % 2 else ("guarded", "bare")
            for mode in order:
                elapsed = runner(mode, batch_size, flagged)
                if repeat:
                    times[mode].append(elapsed)
            tick(f"batch {batch_size}, {'flagged' if flagged else 'unflagged'}")
        bare, guarded = statistics.median(times["bare"]), statistics.median(times["guarded"])
        paired = [g / b for g, b in zip(times["guarded"], times["bare"])]
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        work = runner.guard_work(batch_size, flagged)
        rows.append(
            OverheadRow(
                batch_size, flagged, bare, guarded, guarded / bare,
                paired_ratio_median=statistics.median(paired),
                paired_ratio_iqr=(quartiles[0], quartiles[2]),
                guard_work_ms=work * 1000,
                guard_work_fraction=work / bare,
                bare_times_s=times["bare"],
                guarded_times_s=times["guarded"],
            )
        )
    if config.memory:
        peaks = {}
        for mode in ("bare", "guarded"):
            peaks[mode] = _peak_memory(config, mode)
            tick(f"peak memory ({mode})")
        for row in rows:
            key = f"{row.batch_size}:{int(row.flagged)}"
            row.bare_peak_mib, row.guarded_peak_mib = peaks["bare"][key], peaks["guarded"][key]
            row.memory_ratio = row.guarded_peak_mib / row.bare_peak_mib
    env = environment(model_fingerprint=fingerprint(model).to_dict())
    return OverheadReport(config, rows, env)


if __name__ == "__main__":  # memory worker: python -m eco_unlearn.bench.overhead.benchmark MODE CONFIG_JSON
    raw = json.loads(sys.argv[2])
    raw["batch_sizes"] = tuple(raw["batch_sizes"])
    print(json.dumps(_memory_worker(sys.argv[1], OverheadConfig(**raw))))
