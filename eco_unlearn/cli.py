"""The ``eco-unlearn`` command line: a thin layer over the library, rendered with rich."""

from __future__ import annotations

import json
import sys
import time
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


def _guard_path(spec: str | None, model_name: str) -> Path | None:
    """The guard folder ``--guard`` names: a path, or 'demo' for the one ``eco-unlearn demo`` fitted."""
    from .demo import demo_guard_path
    from .errors import GuardError

    if spec is None:
        return None
    if spec == "demo":
        path = demo_guard_path(model_name)
        if not (path / "guard.json").is_file():
            raise GuardError(f"no demo guard for {model_name} yet: run `eco-unlearn demo --model {model_name}` first (it fits one)")
        return path
    return Path(spec)


def _load_guard(spec: str | None, model_name: str):
    from .guard import Guard

    path = _guard_path(spec, model_name)
    return None if path is None else Guard.load(path)


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr, and the ``(what, done, total)`` callback the library reports to. When
    stderr is not a terminal (a log file, CI), each new step is one timestamped line instead."""
    if not err.is_terminal:
        start, last = time.perf_counter(), [description]
        err.print(f"[{0.0:8.1f}s] {description}", highlight=False)

        def log(what: str, done: int, total: int) -> None:
            if what != last[0]:
                last[0] = what
                err.print(f"[{time.perf_counter() - start:8.1f}s] {what}", highlight=False, soft_wrap=True)

        yield log
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(description, total=None)
        yield lambda what, done, total: bar.update(task, description=what, completed=done, total=total)


@app.command()
def generate(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompts; the demo prompts when omitted."),
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id."),
    guard: Optional[str] = typer.Option(None, "--guard", "-g", help="Guard folder, or 'demo' for the guard `eco-unlearn demo` fitted."),
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
        guarded = GuardedModel(lm, tokenizer, _load_guard(guard, model), force=force, truncation=truncation)
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


def _report_tables(report: Any) -> None:
    """Print a fit report: the classifier's held-out error rates and the strength search."""
    held, cal, obj, search = report.held_out, report.calibration, report.objective, report.search
    table = Table(title=f"classifier for target {report.target!r} (held-out prompts, never seen in training or calibration)")
    for column in ("threshold", "alpha", "calibration negatives", "FPR", "FNR", "FPR on retain prompts"):
        table.add_column(column, justify="right")
    retain = f"{held['fpr_retain']:.2%} of {held['retain_negatives']}" if held.get("fpr_retain") is not None else "-"
    table.add_row(
        f"{cal['threshold']:.4g}", f"{cal['alpha']:g}", str(cal["calibration_negatives"]),
        f"{held['fpr']:.2%} ({held['false_positives']}/{held['negatives']})",
        f"{held['fnr']:.2%} ({held['false_negatives']}/{held['positives']})", retain,
    )
    out.print(table)
    table = Table(title=f"strength search ({search['method']}, {search['evaluations']} evaluations of the guarded model)")
    for column in ("corruption", "strength", "objective", "target", "before", "after (all corrupted)", "after, end to end", "met"):
        table.add_column(column, justify="right")
    sign = "<=" if obj["goal"] == "min" else ">="
    table.add_row(
        report.corruption["name"], f"{report.strength:.4g}", f"{obj['name']} on {obj['items']} items",
        f"{sign} {obj['target']:.3g}", f"{obj['before']:.3g}", f"{obj['after']:.3g}", f"{obj['after_end_to_end']:.3g}",
        "[green]yes[/]" if report.met else "[red]no[/]",
    )
    out.print(table)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


class ClassifierMode(str, Enum):
    linear = "linear"
    finetune = "finetune"


@app.command()
def fit(
    forget: Path = typer.Option(..., "--forget", help="Prompts to forget: JSON Lines or plain text, one a line."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the guard to."),
    retain: Optional[Path] = typer.Option(None, "--retain", help="Prompts to keep answering (hard negatives)."),
    general: str = typer.Option("builtin", "--general", help="Everyday prompts as negatives: a file, 'builtin' or 'none'."),
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id."),
    name: str = typer.Option("forget", "--name", help="The target's name."),
    entities: Optional[str] = typer.Option(None, "--entities", help="Names of the forget scope, comma-separated, or @FILE with one a line."),
    objective: Optional[str] = typer.Option(None, "--objective", help="choice_accuracy, answer_recall or match_reference (default: from the data)."),
    target: Optional[float] = typer.Option(None, "--target", help="The objective's target (default: the objective's own)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="match_reference: items the model never saw, scored unguarded as the reference."),
    statistic: str = typer.Option("truth_ratio", "--statistic", help="match_reference: answer_prob or truth_ratio."),
    corruption: str = typer.Option("gaussian_first_n", "--corruption", help="A registered corruption."),
    strength: Optional[float] = typer.Option(None, "--strength", help="A fixed strength instead of a search."),
    search: str = typer.Option("auto", "--search", help="auto, bisection, zeroth_order or grid."),
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations the search may make."),
    alpha: float = typer.Option(0.01, "--alpha", help="False-positive bound of the threshold."),
    classifier_mode: ClassifierMode = typer.Option("linear", "--classifier", help="linear (frozen encoder) or finetune."),
    backbone: str = typer.Option("minilm", "--backbone", help="Encoder: 'minilm', a local folder or a hub id."),
    chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Wrap prompts in the chat template (default: when the model has one)."),
    seed: int = typer.Option(0, "--seed"),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Also write the report as JSON here."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    device: str = typer.Option("cpu"),
) -> None:
    """Fit a guard: train the prompt classifier, calibrate its threshold, search the corruption strength."""
    from .fit import default_classifier, fit_guard
    from .io import atomic_write_json
    from .items import read_items

    with _errors():
        names = _entities(entities)
        forget_items = read_items(forget, name="forget set")  # bad files fail before the model loads
        retain_items = read_items(retain, name="retain set") if retain is not None else []
        general_items = general if general in ("builtin", "none") else read_items(general, name="general set")
        lm, tokenizer = _load(model, dtype, device)
        classifier = default_classifier(names, backbone=backbone, mode=classifier_mode.value, seed=seed)
        options: dict[str, Any] = {} if target is None else {"target": target}
        if objective == "match_reference":
            if reference is None:
                raise typer.BadParameter("match_reference needs --reference FILE (items the model never saw)")
            options.update(statistic=statistic, reference_items=read_items(reference, name="reference set"))
        with _progress("fitting") as progress:
            result = fit_guard(
                lm, tokenizer, forget_items, retain_items, general=None if general == "none" else general_items, name=name,
                entities=names, classifier=classifier, alpha=alpha, objective=objective, objective_options=options,
                corruption=corruption, strength=strength, search=search, budget=budget, chat=chat, seed=seed,
                progress=progress,
            )
        result.guard.save(out_dir)
        if report_path is not None:
            atomic_write_json(report_path, result.report.to_dict())
        _report_tables(result.report)
        out.print(f"guard written to {out_dir}" + (f", report to {report_path}" if report_path else ""))


def _integers(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} must be integers separated by commas, not {text!r}") from None


def _entities(spec: str | None) -> tuple[str, ...]:
    from .items import read_items

    if not spec:
        return ()
    if spec.startswith("@"):
        return tuple(item.prompt.strip() for item in read_items(spec[1:], name="entities file"))
    return tuple(part.strip() for part in spec.split(",") if part.strip())


@app.command()
def demo(
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to save the guard (default: the cache, for `generate --guard demo`)."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", "-n", min=1),
    seed: int = typer.Option(0, "--seed"),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Also write the fit report as JSON here."),
) -> None:
    """Fit a guard that makes the model forget Harry Potter, then show answers before and after."""
    from .demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS, demo_guard_path, fit_demo_guard
    from .guarded import GuardedModel
    from .io import atomic_write_json

    with _errors():
        lm, tokenizer = _load(model, "float32", "cpu")
        with _progress("fitting the demo guard") as progress:
            result = fit_demo_guard(lm, tokenizer, seed=seed, progress=progress)
        path = out_dir or demo_guard_path(model)
        result.guard.save(path)
        if report_path is not None:
            atomic_write_json(report_path, result.report.to_dict())
        _report_tables(result.report)
        prompts = list(DEMO_FORGET_PROMPTS + DEMO_CLEAN_PROMPTS)
        with err.status(f"Answering {len(prompts)} prompts with and without the guard"):
            guarded = GuardedModel(lm, tokenizer, result.guard)
            after, decisions = guarded.generate(prompts, chat=True, max_new_tokens=max_new_tokens, return_decisions=True)
            before = GuardedModel(lm, tokenizer).generate(prompts, chat=True, max_new_tokens=max_new_tokens)
        table = Table(show_lines=True, title="answers before and after (greedy)")
        for column, ratio in (("prompt", 2), ("flagged (score)", 1), ("before", 3), ("after", 3)):
            table.add_column(column, ratio=ratio)
        for prompt, old, new, decision in zip(prompts, before, after, decisions):
            score = max(decision.scores.values())
            flag = f"[red]yes[/] ({score:.2f})" if decision.flagged else f"[green]no[/] ({score:.2f})"
            table.add_row(prompt, flag, old.strip(), new.strip())
        out.print(table)
        out.print(f"guard written to {path}; try: eco-unlearn generate --guard {'demo' if out_dir is None else path} \"your prompt\"")


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


class ClassifierErrorChoice(str, Enum):
    refuse = "refuse"
    corrupt = "corrupt"


class BackendChoice(str, Enum):
    local = "local"
    vllm = "vllm"


@app.command()
def serve(
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id (vllm backend: a local folder)."),
    guard: Optional[str] = typer.Option(None, "--guard", "-g", help="Guard folder, or 'demo'; without one the model is served unguarded."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="The model id clients send (default: --model)."),
    audit_log: Path = typer.Option(Path("audit.jsonl"), "--audit-log", help="JSON Lines audit log, one line per request."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Write no audit log."),
    audit_prompts: bool = typer.Option(False, "--audit-prompts", help="Store prompt texts in the audit log (default: SHA-256 only)."),
    on_classifier_error: ClassifierErrorChoice = typer.Option("refuse", "--on-classifier-error", help="When the classifier fails: refuse (503) or corrupt every prompt token."),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="ECO_UNLEARN_ADMIN_TOKEN", help="Enables POST /v1/guard/reload for this bearer token."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most prompts in one generate call (1: no batching)."),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", min=0.0, help="How long a batch waits for company."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Larger request bodies get 413."),
    default_max_tokens: int = typer.Option(256, "--default-max-tokens", min=1, help="Chat completions without max_tokens."),
    backend: BackendChoice = typer.Option("local", "--backend", help="local: run the model here; vllm: guard in front of a vLLM server."),
    vllm_url: Optional[str] = typer.Option(None, "--vllm-url", help="vllm backend: the vLLM server (started with --enable-prompt-embeds)."),
    vllm_model: Optional[str] = typer.Option(None, "--vllm-model", help="vllm backend: the model name vLLM serves (default: the served name)."),
    truncation: TruncationChoice = typer.Option("error", help="Over-long prompts: 'error' refuses (400), 'left' drops the oldest tokens."),
    force: bool = typer.Option(False, "--force", help="Attach a guard built for another model anyway."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    device: str = typer.Option("cpu"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the guarded model over an OpenAI-compatible HTTP API (SIGHUP reloads the guard folder)."""
    import logging

    from .serve import ServeConfig, build_backend, create_app
    from .serve.server import serve as run_server

    with _errors():
        guard_path = _guard_path(guard, model)
        config = ServeConfig(
            model_id=served_model_name or model, guard_path=None if guard_path is None else str(guard_path),
            audit_log=None if no_audit else audit_log, audit_prompts=audit_prompts,
            on_classifier_error=on_classifier_error.value, admin_token=admin_token, reload_on_sighup=True,
            max_body_bytes=max_body_bytes, default_max_tokens=default_max_tokens, max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
        )
        with err.status(f"Loading {model} ({backend.value} backend)"):  # the guard first: a broken one fails fast
            served = build_backend(model, config, backend=backend.value, vllm_url=vllm_url, vllm_model=vllm_model,
                                   force=force, truncation=truncation.value, dtype=dtype, device=device)
        application = create_app(served)
        if guard_path is None:
            err.print("[yellow]warning:[/] no --guard: the model is served unguarded")
        audit = "no audit log" if config.audit_log is None else f"audit log {config.audit_log}"
        err.print(f"serving {config.model_id!r} at http://{host}:{port}/v1 ({backend.value} backend, "
                  f"guard {guard_path or 'none'}, {audit})", soft_wrap=True, highlight=False)
    logging.getLogger("eco_unlearn").setLevel(logging.INFO)
    logging.basicConfig(format="%(levelname)s:     %(message)s")
    run_server(application, host, port, log_level=log_level)


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
        sizes = _integers(batch_sizes, "--batch-sizes")
        config = OverheadConfig(model, sizes, new_tokens, repeats, memory=memory, threads=threads)
        with _progress("loading") as progress:
            report = run_overhead(config, progress)
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


@bench_app.command("classifier")
def bench_classifier(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with tofu/ (e.g. ../shared/data); without it only the demo target runs."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated split seeds."),
    alpha: float = typer.Option(0.01),
    mode: ClassifierMode = typer.Option("linear", "--classifier"),
    output: Path = typer.Option(Path("benchmarks/results/classifier.json"), "--out", "-o"),
) -> None:
    """Held-out FPR/FNR of calibrated classifiers (demo target, TOFU forget01) and classifier throughput."""
    from .bench.classifier import ClassifierBenchConfig, run_classifier_bench, summarise

    with _errors():
        seed_list = _integers(seeds, "--seeds")
        if data_dir is not None and not (data_dir / "tofu" / "forget01.jsonl").is_file():
            raise typer.BadParameter(f"no TOFU data under {data_dir / 'tofu'}")
        config = ClassifierBenchConfig(str(data_dir) if data_dir else None, seed_list, alpha, mode.value)
        with _progress("classifier benchmark") as progress:
            report = run_classifier_bench(config, progress)
        report.save(output)
        table = Table(title=f"held-out error rates at alpha={alpha:g}, pooled over seeds {seeds}")
        for column in ("task", "classifier", "FPR (errors/negatives)", "FNR (errors/positives)", "worst seed FPR / FNR", "FNR on paraphrases"):
            table.add_column(column, justify="right")
        for row in summarise(report.rows):
            para = f"{row['paraphrase_fnr']:.2%}" if "paraphrase_fnr" in row else "-"
            table.add_row(row["task"], row["variant"], f"{row['fpr']:.2%} ({row['false_positives']}/{row['negatives']})",
                          f"{row['fnr']:.2%} ({row['false_negatives']}/{row['positives']})",
                          f"{row['worst_seed_fpr']:.2%} / {row['worst_seed_fnr']:.2%}", para)
        Console(width=max(out.width, 150)).print(table)
        table = Table(title="classifier throughput (MiniLM, length-bucketed batches)")
        for column in ("dtype", "prompts", "seconds", "prompts/s"):
            table.add_column(column, justify="right")
        for row in report.throughput:
            table.add_row(row["dtype"], str(row["prompts"]), f"{row['seconds']:.2f}", f"{row['prompts_per_second']:.0f}")
        out.print(table)
        out.print(f"written to {output}")



@bench_app.command("serve")
def bench_serve(
    model: str = typer.Option("smollm2", "--model", "-m"),
    clients: int = typer.Option(4, "--clients", min=1, help="Concurrent clients."),
    duration: float = typer.Option(60.0, "--duration", min=1.0, help="Seconds per mode."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1),
    modes: str = typer.Option("unguarded,guarded,guarded-nobatch", help="Comma-separated modes."),
    max_batch: int = typer.Option(8, "--max-batch", min=1),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Each mode's time is split into this many rounds, interleaved with the other modes."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    output: Path = typer.Option(Path("benchmarks/results/serve.json"), "--out", "-o"),
) -> None:
    """Load test of the server on loopback: throughput, p50/p99 latency, errors and audit lines, guarded vs unguarded."""
    from .bench.serve import ServeBenchConfig, run_serve_bench

    with _errors():
        mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
        config = ServeBenchConfig(model, clients, duration, max_tokens, mode_list, max_batch, rounds=rounds, threads=threads)
        with _progress("serve benchmark") as progress:
            report = run_serve_bench(config, progress)
        report.save(output)
        table = Table(title=f"server load, {model}, {clients} clients x {duration:g} s per mode, max_tokens {max_tokens}, greedy chat")
        columns = ("mode", "requests", "errors", "req/s", "tokens/s", "p50 s", "p99 s", "mean batch", "audit lines", "lost audit lines")
        for column in columns:
            table.add_column(column, justify="right")
        for row in report.rows:
            table.add_row(row.mode, str(row.requests), str(row.errors), f"{row.requests_per_s:.2f}", f"{row.tokens_per_s:.1f}",
                          f"{row.latency_p50_s:.2f}", f"{row.latency_p99_s:.2f}", f"{row.mean_batch_rows:.2f}",
                          str(row.audit_lines), str(row.lost_audit_lines))
        Console(width=max(out.width, 150)).print(table)
        out.print(f"written to {output}")


tofu_app = typer.Typer(help="TOFU: fine-tune target and retain models, fit ECO, score with the published metrics.", no_args_is_help=True)
app.add_typer(tofu_app, name="tofu")

_DATA_HELP = "Folder with the TOFU files (or one holding tofu/); default $ECO_UNLEARN_DATA, else the hub copy."


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI shows its own progress instead


def _finetune_config(epochs: Optional[int], learning_rate: Optional[float], batch_size: Optional[int]):
    from dataclasses import replace

    from .bench.tofu.run import DEFAULT_FINETUNE

    given = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size}
    return replace(DEFAULT_FINETUNE, **{k: v for k, v in given.items() if v is not None})


def _tofu_table(summaries: dict[str, dict[str, float]], title: str) -> None:
    from .bench.tofu.report import COLUMNS, summary_rows

    table = Table(title=title)
    table.add_column("model")
    for _, column in COLUMNS:
        table.add_column(column, justify="right")
    for row in summary_rows(summaries):
        cells = [("-" if row[key] is None else f"{row[key]:.3g}" if key == "forget_quality" else f"{row[key]:.3f}") for key, _ in COLUMNS]
        table.add_row(row["model"], *cells)
    Console(width=max(out.width, 150)).print(table)


@tofu_app.command("prepare")
def tofu_prepare(
    model: str = typer.Option("smollm2", "--model", "-m", help="Base model: embedded default, local folder or hub id."),
    preset: str = typer.Option("mini", "--preset", "--split", help="mini, forget01, forget05 or forget10."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    authors: Optional[int] = typer.Option(None, "--authors", min=1, help="Retain authors to keep (overrides the preset)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    learning_rate: Optional[float] = typer.Option(None, "--lr", min=0.0),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    parallel: bool = typer.Option(True, "--parallel/--sequential", help="Train (and evaluate) target and retain side by side, each on half the cores."),
) -> None:
    """Fine-tune the target (all training authors) and retain (no forget authors) models, or reuse cached ones."""
    from .bench.tofu import TofuRunConfig, load_splits, prepare_models

    _quiet_transformers()
    with _errors():
        config = TofuRunConfig(preset=preset, model=model, authors=authors)
        splits = load_splits(config.resolved_preset(), data_dir)
        with _progress("preparing") as progress:
            prepared = prepare_models(
                splits, model, _finetune_config(epochs, learning_rate, batch_size), parallel=parallel, progress=progress
            )
        table = Table(title=f"TOFU {splits.preset.name} models from {model}")
        for column in ("model", "folder", "pairs", "epoch losses", "minutes"):
            table.add_column(column)
        for role, path in (("target", prepared.target), ("retain", prepared.retain)):
            run = prepared.training[role]
            losses = " ".join(f"{x:.2f}" for x in run["epoch_losses"])
            minutes = "cached" if run["cached"] else f"{run['seconds'] / 60:.1f}"
            table.add_row(role, str(path), str(run["examples"]), losses, minutes)
        Console(width=max(out.width, 150)).print(table)


@tofu_app.command("eval")
def tofu_eval(
    model: str = typer.Option(..., "--model", "-m", help="Model folder (e.g. a prepared target), embedded default or hub id."),
    guard: Optional[Path] = typer.Option(None, "--guard", "-g", help="Guard folder; without it the model is scored bare."),
    preset: str = typer.Option("mini", "--preset", help="Which questions to score: mini, forget01, forget05 or forget10."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    reference: Optional[Path] = typer.Option(None, "--reference", help="The retain model's evaluation JSON (for forget quality)."),
    authors: Optional[int] = typer.Option(None, "--authors", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N questions of each set (smoke runs)."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the per-question JSON here."),
) -> None:
    """Score a model, guarded or not, with TOFU's published metrics."""
    from .bench.tofu import TofuEvalConfig, TofuRunConfig, evaluate_model, load_splits
    from .io import atomic_write_json

    _quiet_transformers()
    with _errors():
        splits = load_splits(TofuRunConfig(preset=preset, authors=authors).resolved_preset(), data_dir)
        with _progress("evaluating") as progress:
            evaluation = evaluate_model(
                model, splits, guard=str(guard) if guard else None, reference=str(reference) if reference else None,
                config=TofuEvalConfig(max_new_tokens=max_new_tokens), limit=limit, progress=progress,
            )
        if output is not None:
            atomic_write_json(output, evaluation.to_dict())
        _tofu_table({evaluation.model: evaluation.summary}, f"TOFU {splits.preset.name}")
        if output is not None:
            out.print(f"per-question values written to {output}")


@tofu_app.command("run")
def tofu_run(
    preset: str = typer.Option("mini", "--preset", help="mini, forget01, forget05 or forget10."),
    model: str = typer.Option("smollm2", "--model", "-m", help="Base model: embedded default, local folder or hub id."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/tofu-PRESET)."),
    authors: Optional[int] = typer.Option(None, "--authors", min=1, help="Retain authors to keep (overrides the preset)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N questions of each set (smoke runs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    learning_rate: Optional[float] = typer.Option(None, "--lr", min=0.0),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations the strength search may make."),
    tokens: str = typer.Option("entities", "--tokens", help="Tokens ECO corrupts: entities (all_but_last where none, or everywhere if entities cannot reach the objective) or all_but_last."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    seed: int = typer.Option(0, "--seed"),
    parallel: bool = typer.Option(True, "--parallel/--sequential", help="Train (and evaluate) target and retain side by side, each on half the cores."),
) -> None:
    """The whole TOFU protocol: prepare the models, evaluate retain and target, fit ECO, evaluate it, report."""
    from .bench.tofu import EcoTofuConfig, TofuEvalConfig, TofuRunConfig, run_tofu

    _quiet_transformers()
    with _errors():
        config = TofuRunConfig(
            preset=preset, model=model, data_dir=str(data_dir) if data_dir else None,
            output=str(output or Path("benchmarks/results") / f"tofu-{preset}"), authors=authors, limit=limit,
            finetune=_finetune_config(epochs, learning_rate, batch_size),
            evaluation=TofuEvalConfig(max_new_tokens=max_new_tokens), eco=EcoTofuConfig(tokens=tokens, budget=budget, seed=seed),
            parallel=parallel,
        )
        with _progress("TOFU") as progress:
            report = run_tofu(config, progress)
        _tofu_table(report.summaries, f"TOFU {report.config['preset']['name']}, {model}")
        checks, passed = report.checks, report.checks["passed"]
        marks = {True: "[green]pass[/]", False: "[red]FAIL[/]"}

        def number(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        out.print(
            f"target forget ROUGE-L {number(checks['target_forget_rouge'], '.3f')} (>= 0.6: {marks[passed['target_learned']]}), "
            f"target forget quality {number(checks['target_forget_quality'], '.3g')} (< 0.01: {marks[passed['target_distinguishable']]}), "
            f"ECO forget quality {number(checks['eco_forget_quality'], '.3g')} (>= 0.1: {marks[passed['eco_forget_quality']]}), "
            f"ECO/target utility {number(checks['eco_utility_ratio'], '.3f')} (>= 0.98: {marks[passed['eco_utility']]})"
        )
        out.print(f"{report.seconds['total'] / 60:.1f} min; report, per-question JSON, guard and plot in {config.output}")


@tofu_app.command("sweep")
def tofu_sweep(
    strengths: str = typer.Option("0,3,10,30,50,100,200,300", "--strengths", help="Comma-separated noise strengths to score."),
    preset: str = typer.Option("mini", "--preset", help="mini, forget01, forget05 or forget10."),
    model: str = typer.Option("smollm2", "--model", "-m", help="Base model: embedded default, local folder or hub id."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/tofu-PRESET-sweep)."),
    authors: Optional[int] = typer.Option(None, "--authors", min=1, help="Retain authors to keep (overrides the preset)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score the retain model on only the first N questions of each set (smoke runs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    learning_rate: Optional[float] = typer.Option(None, "--lr", min=0.0),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    tokens: str = typer.Option("entities", "--tokens", help="entities (then all_but_last, as the fit tries them) or one token selection."),
    seed: int = typer.Option(0, "--seed"),
    parallel: bool = typer.Option(True, "--parallel/--sequential", help="Train target and retain side by side if not cached."),
) -> None:
    """Forget quality and the fit's surrogate at each strength: does the surrogate peak where forget quality does?"""
    from .bench.tofu import EcoTofuConfig, TofuRunConfig
    from .bench.tofu.sweep import run_tofu_sweep

    _quiet_transformers()
    with _errors():
        try:
            values = [float(v) for v in strengths.split(",") if v.strip()]
        except ValueError:
            raise typer.BadParameter(f"--strengths must be comma-separated numbers, not {strengths!r}") from None
        config = TofuRunConfig(
            preset=preset, model=model, data_dir=str(data_dir) if data_dir else None,
            output=str(output or Path("benchmarks/results") / f"tofu-{preset}-sweep"), authors=authors, limit=limit,
            finetune=_finetune_config(epochs, learning_rate, batch_size), eco=EcoTofuConfig(tokens=tokens, seed=seed),
            parallel=parallel,
        )
        with _progress("TOFU sweep") as progress:
            report = run_tofu_sweep(config, values, progress)
        table = Table(title=f"TOFU {report.config['preset']['name']}, {model}: strength sweep")
        for column in ("tokens", "σ", "forget quality", "surrogate", "median truth ratio"):
            table.add_column(column, justify="left" if column == "tokens" else "right")
        for row in report.sweep.rows:
            table.add_row(
                row["tokens"], f"{row['strength']:.4g}", f"{row['forget_quality']:.3g}", f"{row['surrogate']:.3g}",
                f"{row['truth_ratio_median']:.3f}",
            )
        out.print(table)
        low, high = report.sweep.search_range
        out.print(
            f"surrogate: {report.sweep.surrogate_items} holdout questions; the fit searches σ in [{low:.3g}, {high:.3g}]. "
            f"{report.seconds / 60:.1f} min; sweep.json and sweep.png in {config.output}"
        )


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
    except (KeyboardInterrupt, typer.Abort):
        err.print("[red]interrupted[/]")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
