"""Abuse benchmark of the server: ordinary clients' latency while hostile clients attack it, against the same
ordinary load alone.

One guarded server (the model and guard given, the server's default bounds) runs in this process; ``clients``
ordinary clients send greedy chat completions back to back, alternating flagged and clean demo prompts, as
the load benchmark does. In the ``under_abuse`` mode, hostile clients (``hostile.py``, in a process of their
own, from another loopback address) run every kind of attack meanwhile. The two modes alternate over
``rounds`` rounds (alone, under abuse, alone, ...), each on a fresh server, so a shared machine slows both
alike; the figure that matters is the ratio of the two p99 latencies, measured side by side. Every request
that reached a route, ordinary or hostile, must have one audit line: each mode reports the difference.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ...demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS
from ...errors import ServeConfigError
from ...models import fingerprint, load_model
from ...runtime.guard import Guard
from ...validation import integer, number
from ..environment import environment
from ..saving import SavedReport, png_figure
from .hostile import HOSTILE_KINDS, run_hostile

__all__ = ["AbuseBenchConfig", "AbuseBenchReport", "AbuseBenchRow", "plot_abuse", "run_abuse_bench"]

Progress = Callable[[str, int, int], None]
MODES = ("alone", "under_abuse")


@dataclass
class AbuseBenchConfig:
    model: str = "smollm2"
    guard_path: str | None = None  # None: the server runs unguarded
    clients: int = 4
    duration_s: float = 60.0  # per mode, split over the rounds
    max_tokens: int = 16
    rounds: int = 2
    hostile: tuple[str, ...] = HOSTILE_KINDS
    threads: int | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.hostile if k not in HOSTILE_KINDS]
        if unknown or not self.hostile:
            raise ServeConfigError(f"unknown hostile kind(s) {', '.join(unknown) or '(none)'}; choose from "
                                   f"{', '.join(HOSTILE_KINDS)}")
        for name in ("clients", "max_tokens", "rounds"):
            integer(getattr(self, name), name, minimum=1, error=ServeConfigError)
        number(self.duration_s, "duration_s", low=0, low_open=True, error=ServeConfigError)


@dataclass
class AbuseBenchRow:
    mode: str
    requests: int
    errors: int
    latency_p50_s: float
    latency_p99_s: float
    latency_mean_s: float
    hostile_requests: int
    hostile_cpu_s: float  # the attackers' own CPU time, on the same machine
    hostile_statuses: dict[str, dict[str, int]]  # per kind: status -> count ("None": no answer, as meant)
    audit_lines: int
    lost_audit_lines: int  # requests that reached a route less audit lines: 0 when every request is logged
    error_examples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class AbuseBenchReport(SavedReport):
    benchmark: ClassVar[str | None] = "serve-abuse"

    config: AbuseBenchConfig
    rows: list[AbuseBenchRow]
    p50_ratio: float  # under abuse / alone
    p99_ratio: float
    environment: dict[str, Any]


async def _ordinary(url: str, config: AbuseBenchConfig, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(c: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.perf_counter() < deadline:
            pool = DEMO_FORGET_PROMPTS if (c + i) % 2 == 0 else DEMO_CLEAN_PROMPTS
            body = {"model": "bench", "messages": [{"role": "user", "content": pool[(c * 7 + i) % len(pool)]}],
                    "max_tokens": config.max_tokens, "temperature": 0}
            i += 1
            sent = time.perf_counter()
            try:
                response = await http.post(url + "/v1/chat/completions", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=config.clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as http:
        await asyncio.gather(*(client(c, http) for c in range(config.clients)))
    return {"latencies": latencies, "errors": errors}


def _round(mode: str, model: Any, tokenizer: Any, guard: Guard | None, config: AbuseBenchConfig, audit: Path,
           attackers: ProcessPoolExecutor) -> dict[str, Any]:
    """One round of one mode on a fresh server: a warm-up, then the ordinary clients (and the hostile ones)."""
    import httpx

    from ...serve import LocalBackend, ServeConfig, create_app
    from ...serve.server import ServerThread

    seconds = config.duration_s / config.rounds
    serve_config = ServeConfig(model_id="bench", guard_path=config.guard_path, audit_log=audit)
    with ServerThread(create_app(LocalBackend(model, tokenizer, guard, serve_config))) as url:
        warm = {"model": "bench", "messages": [{"role": "user", "content": DEMO_FORGET_PROMPTS[0]}], "max_tokens": 2}
        httpx.post(url + "/v1/chat/completions", json=warm, timeout=600).raise_for_status()
        hostile = attackers.submit(run_hostile, url, "bench", config.hostile, seconds) if mode != "alone" else None
        measured = asyncio.run(_ordinary(url, config, seconds))
        measured["hostile"] = hostile.result() if hostile is not None else {"kinds": {}, "cpu_s": 0.0}
    return measured


def _row(mode: str, rounds: list[dict[str, Any]], audit: Path) -> AbuseBenchRow:
    latencies = [x for r in rounds for x in r["latencies"]]
    errors = [e for r in rounds for e in r["errors"]]
    statuses: dict[str, dict[str, int]] = {}
    hostile = 0
    for r in rounds:
        for kind, result in r["hostile"]["kinds"].items():
            hostile += result["sent"]
            merged = statuses.setdefault(kind, {})
            for status, count in result["statuses"].items():
                merged[status] = merged.get(status, 0) + count
    lines = len(audit.read_text().splitlines()) - len(rounds)  # less the warm-up requests
    return AbuseBenchRow(
        mode=mode, requests=len(latencies), errors=len(errors),
        latency_p50_s=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_s=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        latency_mean_s=statistics.fmean(latencies) if latencies else float("nan"),
        hostile_requests=hostile, hostile_cpu_s=sum(r["hostile"]["cpu_s"] for r in rounds), hostile_statuses=statuses, audit_lines=lines,
        lost_audit_lines=len(latencies) + len(errors) + hostile - lines, error_examples=errors[:5],
        latencies_s=latencies,
    )


def run_abuse_bench(config: AbuseBenchConfig, progress: Progress | None = None) -> AbuseBenchReport:
    """Ordinary clients alone and under abuse, alternating over ``config.rounds`` rounds."""
    if config.threads:
        torch.set_num_threads(config.threads)
    model, tokenizer = load_model(config.model)
    guard = Guard.load(config.guard_path) if config.guard_path is not None else None
    measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    steps, step = config.rounds * len(MODES), 0
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with the server's threads
    with tempfile.TemporaryDirectory(prefix="eco-unlearn-bench-abuse-") as folder, \
            ProcessPoolExecutor(1, mp_context=spawn) as attackers:
        attackers.submit(time.sleep, 0).result()  # start the attackers' process before any timing
        for _ in range(config.rounds):
            for mode in MODES:
                if progress:
                    progress(f"{mode}, round {len(measured[mode]) + 1}", step, steps)
                audit = Path(folder) / f"{mode}.jsonl"
                measured[mode].append(_round(mode, model, tokenizer, guard, config, audit, attackers))
                step += 1
        rows = [_row(mode, measured[mode], Path(folder) / f"{mode}.jsonl") for mode in MODES]
    alone, abused = rows
    env = environment(model_fingerprint=fingerprint(model).to_dict(),
                      guard=config.guard_path or "none", hostile_source="127.0.0.2 (ordinary: 127.0.0.1)")
    return AbuseBenchReport(config, rows, abused.latency_p50_s / alone.latency_p50_s,
                            abused.latency_p99_s / alone.latency_p99_s, env)


def plot_abuse(report: AbuseBenchReport, path: str | Path) -> None:
    """Ordinary clients' latency distribution alone and under abuse, with the p99s marked."""
    with png_figure(path, (7.0, 4.0)) as ax:
        for row, colour in zip(report.rows, ("tab:blue", "tab:red")):
            if row.latencies_s:
                ax.hist(row.latencies_s, bins=40, alpha=0.5, color=colour, label=f"{row.mode} ({row.requests} requests)")
                ax.axvline(row.latency_p99_s, color=colour, linestyle="--", label=f"{row.mode} p99 {row.latency_p99_s:.2f} s")
        ax.set_xlabel("ordinary request latency (s)")
        ax.set_ylabel("requests")
        ax.set_title(f"{report.config.model}: ordinary clients alone vs under abuse (p99 ratio {report.p99_ratio:.2f})")
        ax.legend(fontsize=8)
