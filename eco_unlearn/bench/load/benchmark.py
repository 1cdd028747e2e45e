"""Load benchmark of the OpenAI-compatible server: N concurrent clients on loopback for a bounded time.

The same server (one process, the same settings) runs in each mode: ``unguarded`` (no guard),
``guarded`` (the keyword demo guard, micro-batching on) and ``guarded-nobatch`` (``max_batch=1``, to see
what batching buys). Clients send chat completions, alternating flagged and unflagged demo prompts,
greedy, back to back until the time is up, each at least one (a request started before the deadline runs
to its end). Each mode's time is split into ``rounds`` interleaved with the other modes' (A B C A B C ...),
so a shared, noisy machine slows every mode alike. Each mode reports throughput, latency percentiles, errors, and
audit lines written against requests made.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ...demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS, keyword_demo_guard
from ...errors import ServeConfigError
from ...models import fingerprint, load_model
from ...validation import integer, number
from ..environment import environment
from ..saving import SavedReport

__all__ = ["MODES", "ServeBenchConfig", "ServeBenchReport", "ServeBenchRow", "run_serve_bench"]

Progress = Callable[[str, int, int], None]
MODES = ("unguarded", "guarded", "guarded-nobatch")


@dataclass
class ServeBenchConfig:
    model: str = "smollm2"
    clients: int = 4
    duration_s: float = 60.0
    max_tokens: int = 16
    modes: tuple[str, ...] = MODES
    max_batch: int = 8
    flagged_every: int = 2  # every 2nd request names the forget target
    rounds: int = 3
    threads: int | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ServeConfigError(f"unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}")
        for name in ("clients", "max_tokens", "flagged_every", "rounds"):
            integer(getattr(self, name), name, minimum=1, error=ServeConfigError)
        number(self.duration_s, "duration_s", low=0, low_open=True, error=ServeConfigError)


@dataclass
class ServeBenchRow:
    mode: str
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    completion_tokens: int
    tokens_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    latency_mean_s: float
    flagged_requests: int
    audit_lines: int
    lost_audit_lines: int
    mean_batch_rows: float
    error_examples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)


@dataclass
class ServeBenchReport(SavedReport):
    benchmark: ClassVar[str | None] = "serve"

    config: ServeBenchConfig
    rows: list[ServeBenchRow]
    environment: dict[str, Any]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _prompt(client: int, i: int, flagged_every: int) -> tuple[str, bool]:
    n = client * 7 + i
    if n % flagged_every == 0:
        return DEMO_FORGET_PROMPTS[n % len(DEMO_FORGET_PROMPTS)], True
    return DEMO_CLEAN_PROMPTS[n % len(DEMO_CLEAN_PROMPTS)], False


async def _clients(url: str, model_id: str, config: ServeBenchConfig, seconds: float, progress: Progress | None,
                   mode: str) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    tokens, flagged, errors = 0, 0, []
    start = deadline = 0.0  # set once the clients are ready to send

    async def one_client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens, flagged
        i = 0
        while i == 0 or time.perf_counter() < deadline:  # at least one request, however short the window
            prompt, is_flagged = _prompt(c, i, config.flagged_every)
            i += 1
            body = {"model": model_id, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": config.max_tokens, "temperature": 0}
            sent = time.perf_counter()
            try:
                response = await http.post(url + "/v1/chat/completions", json=body)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                tokens += response.json()["usage"]["completion_tokens"]
                latencies.append(time.perf_counter() - sent)
                flagged += is_flagged
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    async def ticker() -> None:
        while time.perf_counter() < deadline:
            if progress:
                progress(f"{mode}: {len(latencies)} requests", int(time.perf_counter() - start), int(seconds))
            await asyncio.sleep(1)

    limits = httpx.Limits(max_connections=config.clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as http:
        start = time.perf_counter()
        deadline = start + seconds
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(one_client(c, http) for c in range(config.clients)))
        tick.cancel()
    return {"latencies": latencies, "tokens": tokens, "flagged": flagged, "errors": errors,
            "elapsed": time.perf_counter() - start}


def _run_round(mode: str, model: Any, tokenizer: Any, guard: Any, config: ServeBenchConfig, audit: Path,
               progress: Progress | None) -> dict[str, Any]:
    """One round of one mode: a fresh server (appending to the mode's audit log), a warm-up, the clients."""
    import httpx

    from ...serve import LocalBackend, ServeConfig, create_app
    from ...serve.server import ServerThread

    max_batch = 1 if mode.endswith("nobatch") else config.max_batch
    serve_config = ServeConfig(model_id="bench", audit_log=audit, max_batch=max_batch)
    backend = LocalBackend(model, tokenizer, None if mode == "unguarded" else guard, serve_config)
    with ServerThread(create_app(backend)) as url:
        warm = {"model": "bench", "messages": [{"role": "user", "content": DEMO_FORGET_PROMPTS[0]}], "max_tokens": 2}
        httpx.post(url + "/v1/chat/completions", json=warm, timeout=600).raise_for_status()
        measured = asyncio.run(_clients(url, "bench", config, config.duration_s / config.rounds, progress, mode))
    measured["batches"] = backend.batcher.batches[1:]  # the warm-up request was the first batch
    return measured


def _row(mode: str, rounds: list[dict[str, Any]], audit: Path) -> ServeBenchRow:
    latencies = [x for r in rounds for x in r["latencies"]]
    errors = [e for r in rounds for e in r["errors"]]
    batches = [b for r in rounds for b in r["batches"]]
    elapsed = sum(r["elapsed"] for r in rounds)
    tokens = sum(r["tokens"] for r in rounds)
    lines = len(audit.read_text().splitlines()) - len(rounds)  # less the warm-up requests
    return ServeBenchRow(
        mode=mode,
        requests=len(latencies),
        errors=len(errors),
        duration_s=elapsed,
        requests_per_s=len(latencies) / elapsed,
        completion_tokens=tokens,
        tokens_per_s=tokens / elapsed,
        latency_p50_s=_percentile(latencies, 50),
        latency_p99_s=_percentile(latencies, 99),
        latency_mean_s=statistics.fmean(latencies) if latencies else float("nan"),
        flagged_requests=sum(r["flagged"] for r in rounds),
        audit_lines=lines,
        lost_audit_lines=len(latencies) + len(errors) - lines,
        mean_batch_rows=statistics.fmean(batches) if batches else 0.0,
        error_examples=errors[:5],
        latencies_s=latencies,
    )


def run_serve_bench(config: ServeBenchConfig, progress: Progress | None = None) -> ServeBenchReport:
    """Run the server in each mode on loopback with ``config.clients`` concurrent clients."""
    if config.threads:
        torch.set_num_threads(config.threads)
    model, tokenizer = load_model(config.model)
    guard = keyword_demo_guard(model)
    measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in config.modes}
    with tempfile.TemporaryDirectory(prefix="eco-unlearn-bench-serve-") as folder:
        for _ in range(config.rounds):
            for mode in config.modes:
                audit = Path(folder) / f"{mode}.jsonl"
                measured[mode].append(_run_round(mode, model, tokenizer, guard, config, audit, progress))
        rows = [_row(mode, measured[mode], Path(folder) / f"{mode}.jsonl") for mode in config.modes]
    env = environment(model_fingerprint=fingerprint(model).to_dict(), guard="keyword demo guard (keyword_demo_guard)")
    return ServeBenchReport(config, rows, env)
