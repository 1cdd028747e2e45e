"""The ``eco-unlearn`` command line: a thin layer over the library, rendered with rich."""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import EcoUnlearnError

try:  # recent typer vendors its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

app = typer.Typer(
    help="Make a language model forget chosen knowledge with embedding-corrupted prompts (ECO).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: print tables and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

out = Console()
err = Console(stderr=True)


class TruncationChoice(str, Enum):
    error = "error"
    left = "left"


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors about bad input into one red line and exit code 2."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *args, **kwargs: err.print(f"[yellow]warning:[/] {message}")
            yield
    except EcoUnlearnError as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        raise typer.Exit(130) from None


def _load(model: str, dtype: str, device: str) -> tuple[Any, Any]:
    from transformers.utils import logging as hf_logging

    from .models import EMBEDDED_MODELS, load_model

    hf_logging.disable_progress_bar()  # the CLI shows its own status instead

    first = model in EMBEDDED_MODELS and not EMBEDDED_MODELS[model].is_cached()
    note = " (first use: converting the GGUF file into the cache, about 30 s)" if first else ""
    with err.status(f"Loading {model}{note}"):
        return load_model(model, dtype=dtype, device=device)


def _load_guard(spec: str | None, model: Any):
    from .demo import demo_guard
    from .guard import Guard

    if spec is None:
        return None
    if spec == "demo":
        return demo_guard(model)
    return Guard.load(spec)


@app.command()
def generate(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompts; the demo prompts when omitted."),
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id."),
    guard: Optional[str] = typer.Option(None, "--guard", "-g", help="Guard folder, or 'demo' for the built-in target."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", min=1),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass, in (0, 1]."),
    seed: Optional[int] = typer.Option(None, help="Seed for sampling (temperature > 0)."),
    chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Wrap prompts in the chat template (default: when the model has one)."),
    compare: bool = typer.Option(False, "--compare", help="Also show the unguarded answer side by side."),
    truncation: TruncationChoice = typer.Option("error", help="Over-long prompts: 'error' refuses, 'left' drops the oldest tokens."),
    force: bool = typer.Option(False, "--force", help="Attach a guard built for another model anyway."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per prompt instead of a table."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    device: str = typer.Option("cpu"),
) -> None:
    """Generate with a guarded model; flagged prompts are answered from corrupted embeddings."""
    from .demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS
    from .guarded import GuardedModel

    with _errors():
        prompts = list(prompts or (DEMO_FORGET_PROMPTS + DEMO_CLEAN_PROMPTS))
        lm, tokenizer = _load(model, dtype, device)
        guarded = GuardedModel(lm, tokenizer, _load_guard(guard, lm), force=force, truncation=truncation)
        use_chat = bool(tokenizer.chat_template) if chat is None else chat
        kwargs = dict(chat=use_chat, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        with err.status(f"Generating {len(prompts)} answer(s)"):
            texts, decisions = guarded.generate(prompts, return_decisions=True, **kwargs)
            bare = GuardedModel(lm, tokenizer, truncation=truncation).generate(prompts, **kwargs) if compare else None
        if as_json:
            for i, (prompt, text, decision) in enumerate(zip(prompts, texts, decisions)):
                record = {"prompt": prompt, "text": text, "decision": decision.to_dict()}
                if bare is not None:
                    record["unguarded"] = bare[i]
                out.print_json(json.dumps(record))
            return
        table = Table(show_lines=True, title=f"{model}" + (f" guarded by {guard}" if guard else " (no guard)"))
        table.add_column("prompt", ratio=2)
        table.add_column("flagged by", ratio=1)
        if bare is not None:
            table.add_column("unguarded answer", ratio=3)
        table.add_column("answer", ratio=3)
        for i, (prompt, text, decision) in enumerate(zip(prompts, texts, decisions)):
            flag = (
                f"[red]{', '.join(decision.targets)}[/]\n{decision.corrupted_tokens} token(s) corrupted"
                if decision.flagged
                else "[green]-[/]"
            )
            cells = [prompt, flag] + ([bare[i].strip()] if bare is not None else []) + [text.strip()]
            table.add_row(*cells)
        out.print(table)


@app.command()
def inspect(path: Path = typer.Argument(..., help="A guard folder.")) -> None:
    """Show what a guard artifact holds."""
    from .guard import Guard

    with _errors():
        guard = Guard.load(path)
        data = guard.to_dict()
        out.print(f"[bold]guard[/] {path}  (format v{data['format_version']}, seed {guard.seed})")
        fp = guard.model_fingerprint
        out.print(
            f"model: {fp.architecture}, vocab {fp.vocab_size}, hidden {fp.hidden_size}, embeddings sha256 "
            f"{fp.embedding_sha256[:16]}..." if fp else "model: any (no fingerprint)"
        )
        table = Table(title="targets")
        for column in ("name", "classifier", "threshold", "tokens", "corruption", "calibration"):
            table.add_column(column)
        for target, entry in zip(guard.targets, data["targets"]):
            spec = target.corruption
            params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
            tokens = target.tokens.strategy + (f" ({len(target.tokens.entities)} entities)" if target.tokens.entities else "")
            table.add_row(
                target.name,
                f"{entry['classifier']['kind']}",
                f"{target.threshold:g}",
                tokens,
                f"{spec.name}(strength={spec.strength:g}{', ' + params if params else ''})",
                json.dumps(target.calibration) if target.calibration else "-",
            )
        out.print(table)
        if guard.metadata:
            out.print("metadata:", guard.metadata)


@app.command()
def models() -> None:
    """List the embedded default models and whether they are converted in the cache."""
    from .models import EMBEDDED_MODELS, cache_dir

    table = Table(title=f"embedded models (cache: {cache_dir()})")
    for column in ("name", "description", "cached", "path"):
        table.add_column(column)
    for entry in EMBEDDED_MODELS.values():
        cached = entry.is_cached()
        table.add_row(entry.name, entry.description, "[green]yes[/]" if cached else "no (converted on first use)",
                      str(entry.cached_path()) if cached else "-")
    out.print(table)


@bench_app.command("overhead")
def bench_overhead(
    model: str = typer.Option("smollm2", "--model", "-m"),
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    new_tokens: int = typer.Option(64, min=1),
    repeats: int = typer.Option(5, min=1),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Also measure peak memory (Linux)."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    output: Path = typer.Option(Path("benchmarks/results/overhead.json"), "--out", "-o"),
) -> None:
    """Latency and peak memory of guarded vs bare generation, as ratios measured in one run."""
    from .bench.overhead import OverheadConfig, run_overhead

    with _errors():
        try:
            sizes = tuple(int(b) for b in batch_sizes.split(","))
        except ValueError:
            raise typer.BadParameter(f"--batch-sizes must be integers separated by commas, not {batch_sizes!r}")
        config = OverheadConfig(model, sizes, new_tokens, repeats, memory=memory, threads=threads)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err) as bar:
            task = bar.add_task("loading", total=None)
            report = run_overhead(config, lambda what, done, total: bar.update(task, description=what, completed=done, total=total))
        report.save(output)
        table = Table(title=f"guard overhead, {model}, {new_tokens} new tokens, {repeats} paired repeats")
        columns = ("batch", "prompts", "bare s", "guarded s", "ratio of medians", "paired ratio (IQR)",
                   "guard work ms", "guard work / bare", "peak MiB bare / guarded", "memory ratio")
        for column in columns:
            table.add_column(column, justify="right")
        for row in report.rows:
            low, high = row.paired_ratio_iqr
            memory = (f"{row.bare_peak_mib:.0f} / {row.guarded_peak_mib:.0f}", f"{row.memory_ratio:.3f}") if row.memory_ratio else ("-", "-")
            table.add_row(
                str(row.batch_size), "flagged" if row.flagged else "clean", f"{row.bare_median_s:.3f}",
                f"{row.guarded_median_s:.3f}", f"{row.latency_ratio:.3f}",
                f"{row.paired_ratio_median:.3f} ({low:.2f}-{high:.2f})", f"{row.guard_work_ms:.2f}",
                f"{row.guard_work_fraction:.2%}", *memory,
            )
        Console(width=max(out.width, 150)).print(table)  # wide even when stdout is not a terminal
        out.print(f"written to {output}")


def main() -> None:
    """Console entry point: like ``app()``, but a usage error is one ``error:`` line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        err.print(exc.format_message())
        code = 2
    except click_exceptions.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        err.print(f"[bold red]error:[/] {exc.format_message()}{hint}", soft_wrap=True, highlight=False)
        code = 2
    except click_exceptions.Abort:
        err.print("[red]interrupted[/]")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
