"""``eco-unlearn bench ...``: the overhead, classifier and load benchmarks (tables, JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .console import errors, out, progress
from .render import abuse_bench_table, classifier_bench_tables, overhead_table, serve_bench_table

app = typer.Typer(help="Benchmarks: print tables and write JSON.", no_args_is_help=True)


@app.command("overhead")
def overhead(
    model: str = opt.MODEL,
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    new_tokens: int = typer.Option(64, min=1),
    repeats: int = typer.Option(5, min=1),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Also measure peak memory (Linux)."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON to write (default: benchmarks/results/overhead.json)."),
) -> None:
    """Latency and peak memory of guarded vs bare generation, as ratios measured in one run."""
    from ..bench.overhead import OverheadConfig, run_overhead

    with errors():
        output = output or opt.results_path("overhead.json")
        config = OverheadConfig(model, opt.integers(batch_sizes, "--batch-sizes"), new_tokens, repeats, memory=memory,
                                threads=threads)
        with progress("loading") as report_progress:
            report = run_overhead(config, report_progress)
        report.save(output)
        overhead_table(report, model, new_tokens, repeats)
        out.print(f"written to {output}")


@app.command("classifier")
def classifier(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with tofu/ (e.g. ../shared/data); without it only the demo target runs."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated split seeds."),
    alpha: float = typer.Option(0.01),
    mode: opt.ClassifierMode = typer.Option("linear", "--classifier"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON to write (default: benchmarks/results/classifier.json)."),
) -> None:
    """Held-out FPR/FNR of calibrated classifiers (demo target, TOFU forget01) and classifier throughput."""
    from ..bench.classifier import ClassifierBenchConfig, run_classifier_bench, summarise

    with errors():
        output = output or opt.results_path("classifier.json")
        seed_list = opt.integers(seeds, "--seeds")
        if data_dir is not None and not (data_dir / "tofu" / "forget01.jsonl").is_file():
            raise typer.BadParameter(f"no TOFU data under {data_dir / 'tofu'}")
        config = ClassifierBenchConfig(str(data_dir) if data_dir else None, seed_list, alpha, opt.ClassifierMode(mode).value)
        with progress("classifier benchmark") as report_progress:
            report = run_classifier_bench(config, report_progress)
        report.save(output)
        classifier_bench_tables(summarise(report.rows), report.throughput, alpha, seeds)
        out.print(f"written to {output}")


@app.command("serve")
def serve(
    model: str = opt.MODEL,
    clients: int = typer.Option(4, "--clients", min=1, help="Concurrent clients."),
    duration: float = typer.Option(60.0, "--duration", min=1.0, help="Seconds per mode."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1),
    modes: str = typer.Option("unguarded,guarded,guarded-nobatch", help="Comma-separated modes."),
    max_batch: int = typer.Option(8, "--max-batch", min=1),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Each mode's time is split into this many rounds, interleaved with the other modes."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON to write (default: benchmarks/results/serve.json; gateway mode: a folder, benchmarks/results/serve-vllm)."),
    vllm_url: Optional[str] = typer.Option(None, "--vllm-url", help="Gateway mode: the vLLM engine (scripts/vllm-server); runs the vLLM gateway vs direct vLLM vs the local backend, unflagged and half-flagged traffic (--modes is ignored)."),
    abuse: bool = typer.Option(False, "--abuse", help="Abuse mode: ordinary clients alone vs while hostile clients attack (--modes and --max-batch are not used)."),
    guard: Optional[str] = typer.Option("demo", "--guard", "-g", help="--abuse: the guard folder, or 'demo'."),
) -> None:
    """Load test of the server on loopback: throughput, p50/p99 latency, errors and audit lines, guarded vs unguarded."""
    from ..bench.load import ServeBenchConfig, run_serve_bench

    if abuse:
        _serve_abuse(model, guard, clients, duration, max_tokens, rounds, threads, output)
        return
    with errors():
        if vllm_url:
            from .bench_gateway import gateway_bench

            return gateway_bench(vllm_url, model, clients, duration, max_tokens, rounds, max_batch, threads, output)
        output = output or opt.results_path("serve.json")
        mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
        config = ServeBenchConfig(model, clients, duration, max_tokens, mode_list, max_batch, rounds=rounds, threads=threads)
        with progress("serve benchmark") as report_progress:
            report = run_serve_bench(config, report_progress)
        report.save(output)
        serve_bench_table(report, model, clients, duration, max_tokens)
        out.print(f"written to {output}")


def _serve_abuse(model: str, guard: Optional[str], clients: int, duration: float, max_tokens: int, rounds: int,
                 threads: Optional[int], output: Optional[Path]) -> None:
    """``bench serve --abuse``: JSON, a PNG next to it and the tables."""
    from ..bench.load import AbuseBenchConfig, plot_abuse, run_abuse_bench
    from .console import guard_path

    with errors():
        output = output or opt.results_path("serve-abuse/abuse.json")
        folder = guard_path(guard, model)
        config = AbuseBenchConfig(model, None if folder is None else str(folder), clients, duration, max_tokens,
                                  rounds=rounds, threads=threads)
        with progress("abuse benchmark") as report_progress:
            report = run_abuse_bench(config, report_progress)
        report.save(output)
        plot_abuse(report, output.with_suffix(".png"))
        abuse_bench_table(report)
        out.print(f"written to {output} and {output.with_suffix('.png')}")
