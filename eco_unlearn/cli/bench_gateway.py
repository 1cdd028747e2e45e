"""``eco-unlearn bench serve --vllm-url URL``: the gateway mode of the load benchmark, against a real vLLM engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.table import Table

from .console import out, progress, wide


def gateway_bench(vllm_url: str, model: str, clients: int, duration: float, max_tokens: int, rounds: int,
                  max_batch: int, threads: Optional[int], output: Optional[Path]) -> None:
    """Run the gateway benchmark, write results.json, throughput.png and table.md, and print the table."""
    from ..bench.load.gateway import GatewayBenchConfig, run_gateway_bench
    from .options import results_path

    folder = output or results_path("serve-vllm")
    config = GatewayBenchConfig(vllm_url, model, clients=clients, duration_s=duration, max_tokens=max_tokens,
                                rounds=rounds, max_batch=max_batch, threads=threads or 1, agreement_tokens=max_tokens)
    with progress("serve-vllm benchmark") as report_progress:
        report = run_gateway_bench(config, report_progress)
    report.save_all(folder)
    table = Table(title=f"vLLM gateway under load, {model}, {clients} clients x {duration:g} s per cell, "
                        f"max_tokens {max_tokens}, greedy chat")
    for column in ("traffic", "mode", "requests", "errors", "req/s", "tokens/s", "p50 s", "p99 s", "audit lines",
                   "lost audit lines"):
        table.add_column(column, justify="right")
    for r in report.rows:
        table.add_row(r.traffic, r.mode, str(r.requests), str(r.errors), f"{r.requests_per_s:.2f}",
                      f"{r.tokens_per_s:.1f}", f"{r.latency_p50_s:.3f}", f"{r.latency_p99_s:.3f}",
                      "-" if r.audit_lines is None else str(r.audit_lines),
                      "-" if r.lost_audit_lines is None else str(r.lost_audit_lines))
    wide().print(table)
    for traffic in config.traffic:
        ratio = report.ratio(traffic)
        if ratio is not None:
            out.print(f"gateway / direct vLLM throughput, {traffic} traffic: {ratio:.3f}")
    if report.agreement is not None:
        a = report.agreement
        out.print(f"greedy agreement with the local backend: {a.equal}/{a.total} equal, {a.unexplained} unexplained")
    out.print(f"written to {folder}")
