"""Load benchmark of the vLLM gateway against a real vLLM engine: the gateway vs vLLM itself vs the local backend.

Three modes answer the same traffic: ``gateway`` (``VLLMGateway`` with the keyword demo guard, in front of
the engine at ``vllm_url``), ``direct`` (the clients talk to the engine itself: no guard, no gateway) and
``local`` (``LocalBackend`` with the same guard, the model in this process). Two traffic mixes run:
``unflagged`` (hard negatives only, so the gateway sends plain text and any cost is the gateway's own) and
``half-flagged`` (every second request asks about the forget target; the gateway sends it as corrupted
``prompt_embeds``; ``direct`` answers it uncorrupted). Clients send greedy chat completions back to back;
each (mix, mode) cell's time is split into rounds interleaved with the others', so a shared, noisy machine
slows every cell alike. Each cell reports throughput, p50/p99 latency, errors and lost audit lines; the
report also holds the greedy agreement of gateway and local answers on the fixed 40 prompts
(``agreement.py``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ...demo import demo_data, keyword_demo_guard
from ...errors import ServeConfigError
from ...models import fingerprint, load_model
from ...validation import integer, number
from ..environment import environment
from ..saving import SavedReport, png_figure
from .agreement import AgreementReport, compare_answers

__all__ = ["GATEWAY_MODES", "TRAFFIC", "GatewayBenchConfig", "GatewayBenchReport", "GatewayBenchRow",
           "run_gateway_bench"]

Progress = Callable[[str, int, int], None]
GATEWAY_MODES = ("gateway", "direct", "local")
TRAFFIC = ("unflagged", "half-flagged")


@dataclass
class GatewayBenchConfig:
    vllm_url: str
    model: str = "smollm2"
    served_model: str = "smollm2"  # the name the engine serves (scripts/vllm-server: smollm2)
    clients: int = 4
    duration_s: float = 30.0  # per (traffic, mode) cell, split into rounds
    max_tokens: int = 16
    modes: tuple[str, ...] = GATEWAY_MODES
    traffic: tuple[str, ...] = TRAFFIC
    rounds: int = 3
    max_batch: int = 8
    threads: int | None = 1  # torch threads here; the CPU engine takes a core of its own
    agreement_tokens: int = 16  # greedy tokens per answer in the 40-prompt agreement check; 0 skips it

    def __post_init__(self) -> None:
        for name, allowed in (("modes", GATEWAY_MODES), ("traffic", TRAFFIC)):
            chosen = getattr(self, name)
            unknown = [m for m in chosen if m not in allowed]
            if unknown or not chosen:
                raise ServeConfigError(f"unknown {name} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}")
        for name in ("clients", "max_tokens", "rounds", "max_batch"):
            integer(getattr(self, name), name, minimum=1, error=ServeConfigError)
        integer(self.agreement_tokens, "agreement_tokens", minimum=0, error=ServeConfigError)
        number(self.duration_s, "duration_s", low=0, low_open=True, error=ServeConfigError)


@dataclass
class GatewayBenchRow:
    traffic: str
    mode: str
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    completion_tokens: int
    tokens_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    flagged_requests: int
    audit_lines: int | None  # None: direct vLLM writes no audit log
    lost_audit_lines: int | None
    error_examples: list[str] = field(default_factory=list)


@dataclass
class GatewayBenchReport(SavedReport):
    benchmark: ClassVar[str | None] = "serve-vllm"

    config: GatewayBenchConfig
    rows: list[GatewayBenchRow]
    agreement: AgreementReport | None
    environment: dict[str, Any]

    def row(self, traffic: str, mode: str) -> GatewayBenchRow | None:
        return next((r for r in self.rows if r.traffic == traffic and r.mode == mode), None)

    def ratio(self, traffic: str = "unflagged", mode: str = "gateway", baseline: str = "direct") -> float | None:
        """Throughput (requests/s) of ``mode`` over ``baseline`` on one traffic mix, measured side by side."""
        ours, theirs = self.row(traffic, mode), self.row(traffic, baseline)
        return None if ours is None or theirs is None else ours.requests_per_s / theirs.requests_per_s

    def markdown(self) -> str:
        lines = ["| traffic | mode | requests | errors | req/s | tokens/s | p50 s | p99 s | flagged | audit lines | lost |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            audit = "-" if r.audit_lines is None else str(r.audit_lines)
            lost = "-" if r.lost_audit_lines is None else str(r.lost_audit_lines)
            lines.append(f"| {r.traffic} | {r.mode} | {r.requests} | {r.errors} | {r.requests_per_s:.2f} | "
                         f"{r.tokens_per_s:.1f} | {r.latency_p50_s:.3f} | {r.latency_p99_s:.3f} | "
                         f"{r.flagged_requests} | {audit} | {lost} |")
        for traffic in self.config.traffic:
            ratio = self.ratio(traffic)
            if ratio is not None:
                lines.append(f"\ngateway / direct vLLM throughput, {traffic}: {ratio:.3f}")
        if self.agreement is not None:
            a = self.agreement
            lines.append(f"\ngreedy agreement gateway vs local backend ({a.total} prompts, {a.max_tokens} tokens): "
                         f"{a.equal}/{a.total} equal, {a.unexplained} unexplained")
            lines += [f"- {r.prompt!r} (flagged: {r.flagged}): {r.explanation}" for r in a.rows if not r.equal]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> None:
        """Throughput and p50/p99 latency per mode, one group per traffic mix."""
        with png_figure(path, (9, 4)) as ax:
            modes, mixes = list(self.config.modes), list(self.config.traffic)
            width = 0.8 / len(modes)
            for j, mode in enumerate(modes):
                rows = [self.row(t, mode) for t in mixes]
                x = np.arange(len(mixes)) + j * width
                ax.bar(x, [r.requests_per_s if r else 0 for r in rows], width, label=mode)
                for xi, r in zip(x, rows):
                    if r:
                        ax.annotate(f"p50 {r.latency_p50_s:.2f}s\np99 {r.latency_p99_s:.2f}s", (xi, r.requests_per_s),
                                    ha="center", va="bottom", fontsize=7)
            ax.set_xticks(np.arange(len(mixes)) + width * (len(modes) - 1) / 2, mixes)
            ax.set_ylabel("requests / s")
            ax.set_title(f"vLLM gateway vs direct vLLM vs local backend ({self.config.clients} clients, "
                         f"{self.config.max_tokens} tokens, greedy)")
            ax.legend()

    def save_all(self, folder: str | Path) -> None:
        """``results.json``, ``throughput.png`` and ``table.md`` in ``folder``."""
        from ...io import atomic_write_text

        folder = Path(folder)
        self.save(folder / "results.json")
        self.plot(folder / "throughput.png")
        atomic_write_text(folder / "table.md", self.markdown())


def _prompts() -> tuple[list[str], list[str]]:
    data = demo_data()
    return [i.prompt for i in data.forget], [i.prompt for i in data.retain]


async def _clients(url: str, model_id: str, config: GatewayBenchConfig, flagged_every: int | None, seconds: float,
                   tick: Callable[[], None]) -> dict[str, Any]:
    import httpx

    forget, clean = _prompts()
    latencies: list[float] = []
    tokens, flagged, errors = 0, 0, []
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def one_client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens, flagged
        i = 0
        while time.perf_counter() < deadline:
            n = c * 7 + i
            i += 1
            is_flagged = flagged_every is not None and n % flagged_every == 0
            prompt = forget[n % len(forget)] if is_flagged else clean[n % len(clean)]
            body = {"model": model_id, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": config.max_tokens, "temperature": 0}
            sent = time.perf_counter()
            try:
                response = await http.post(url + "/v1/chat/completions", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            latencies.append(time.perf_counter() - sent)
            tokens += response.json()["usage"]["completion_tokens"]
            flagged += is_flagged
            tick()

    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=httpx.Limits(max_connections=config.clients)) as http:
        await asyncio.gather(*(one_client(c, http) for c in range(config.clients)))
    return {"latencies": latencies, "tokens": tokens, "flagged": flagged, "errors": errors,
            "elapsed": time.perf_counter() - start}


def _server(mode: str, model: Any, tokenizer: Any, embedder: Any, guard: Any, config: GatewayBenchConfig,
            audit: Path) -> Any:
    from ...serve import LocalBackend, ServeConfig, VLLMGateway, create_app

    serve_config = ServeConfig(model_id=config.served_model, audit_log=audit, max_batch=config.max_batch)
    if mode == "local":
        return create_app(LocalBackend(model, tokenizer, guard, serve_config))
    return create_app(VLLMGateway(embedder, tokenizer, guard, serve_config, url=config.vllm_url,
                                  upstream_model=config.served_model))


def _row(traffic: str, mode: str, rounds: list[dict[str, Any]], audit: Path | None) -> GatewayBenchRow:
    latencies = [x for r in rounds for x in r["latencies"]]
    errors = [e for r in rounds for e in r["errors"]]
    elapsed = sum(r["elapsed"] for r in rounds)
    tokens = sum(r["tokens"] for r in rounds)
    lines = None if audit is None else len(audit.read_text().splitlines()) - len(rounds)  # less the warm-ups
    return GatewayBenchRow(
        traffic=traffic, mode=mode, requests=len(latencies), errors=len(errors), duration_s=elapsed,
        requests_per_s=len(latencies) / elapsed, completion_tokens=tokens, tokens_per_s=tokens / elapsed,
        latency_p50_s=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_s=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        flagged_requests=sum(r["flagged"] for r in rounds), audit_lines=lines,
        lost_audit_lines=None if lines is None else len(latencies) + len(errors) - lines, error_examples=errors[:5],
    )


def run_gateway_bench(config: GatewayBenchConfig, progress: Progress | None = None) -> GatewayBenchReport:
    """Run every (traffic, mode) cell against the engine at ``config.vllm_url``, then the agreement check."""
    import httpx

    from ...serve.embedding import load_embedding_only
    from ...serve.server import ServerThread

    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        httpx.get(config.vllm_url.rstrip("/") + "/v1/models", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise ServeConfigError(f"no vLLM server answers at {config.vllm_url} ({exc}): start one with "
                               "scripts/vllm-server, or give its address with --vllm-url") from None
    model, tokenizer = load_model(config.model)
    embedder, _ = load_embedding_only(config.model)
    guard = keyword_demo_guard(model)
    cells = [(t, m) for t in config.traffic for m in config.modes]
    measured: dict[tuple[str, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
    total = round(config.duration_s * len(cells))
    started = time.perf_counter()
    label = [""]

    def tick() -> None:
        if progress:
            progress(label[0], min(total, int(time.perf_counter() - started)), total)

    with tempfile.TemporaryDirectory(prefix="eco-unlearn-bench-vllm-") as folder:
        audits = {cell: Path(folder) / f"{cell[0]}-{cell[1]}.jsonl" for cell in cells}
        for k in range(config.rounds):
            for traffic, mode in cells:
                label[0] = f"{traffic} traffic, {mode} (round {k + 1} of {config.rounds})"
                tick()
                every = None if traffic == "unflagged" else 2
                seconds = config.duration_s / config.rounds
                if mode == "direct":
                    run = _clients(config.vllm_url.rstrip("/"), config.served_model, config, every, seconds, tick)
                    measured[traffic, mode].append(asyncio.run(run))
                    continue
                app = _server(mode, model, tokenizer, embedder, guard, config, audits[traffic, mode])
                with ServerThread(app) as url:
                    warm = {"model": config.served_model, "max_tokens": 2,
                            "messages": [{"role": "user", "content": "Who is Harry Potter?"}]}
                    httpx.post(url + "/v1/chat/completions", json=warm, timeout=600).raise_for_status()
                    run = _clients(url, config.served_model, config, every, seconds, tick)
                    measured[traffic, mode].append(asyncio.run(run))
        rows = [_row(t, m, measured[t, m], None if m == "direct" else audits[t, m]) for t, m in cells]
        agreement = None
        if config.agreement_tokens:
            if progress:
                progress("agreement: 40 prompts through the gateway and the local backend", total, total)
            gateway_app = _server("gateway", model, tokenizer, embedder, guard, config, Path(folder) / "g.jsonl")
            local_app = _server("local", model, tokenizer, embedder, guard, config, Path(folder) / "l.jsonl")
            with ServerThread(gateway_app) as gateway_url, ServerThread(local_app) as local_url:
                agreement = compare_answers(gateway_url, local_url, model, tokenizer, guard,
                                            model_id=config.served_model, max_tokens=config.agreement_tokens)
    engine = httpx.get(config.vllm_url.rstrip("/") + "/version", timeout=10)
    env = environment(model_fingerprint=fingerprint(model).to_dict(), guard="keyword demo guard (keyword_demo_guard)",
                      vllm=engine.json().get("version") if engine.status_code == 200 else None)
    return GatewayBenchReport(config, rows, agreement, env)
