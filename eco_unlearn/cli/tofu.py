"""``eco-unlearn tofu ...``: fine-tune TOFU target and retain models, fit ECO, score with the published metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import options as opt
from .console import errors, out, progress, quiet_transformers
from .render import tofu_checks, tofu_models_table, tofu_sweep_table, tofu_table

app = typer.Typer(help="TOFU: fine-tune target and retain models, fit ECO, score with the published metrics.",
                  no_args_is_help=True)

PRESET = typer.Option("mini", "--preset", help="mini, forget01, forget05 or forget10.")
BASE_MODEL = typer.Option("smollm2", "--model", "-m", help="Base model: embedded default, local folder or hub id.")
AUTHORS = typer.Option(None, "--authors", min=1, help="Retain authors to keep (overrides the preset).")
HOLDOUT = typer.Option(None, "--holdout", help="Holdout split whose never-seen authors ECO's surrogate scores: "
                         "holdout01, holdout05 or holdout10 (default: EcoTofuConfig's).")
FORGET_ANSWERS = typer.Option("tofu", "--forget-answers", help="Answers ECO's surrogate scores on the forget questions: tofu "
                              "(TOFU's paraphrase and perturbed answers) or swapped (the answer and fact swaps, built as the holdout side's).")
REFERENCE = typer.Option("holdout", "--reference", help="What ECO's surrogate takes for a model that never saw the forget "
                         "authors: holdout (the target on the holdout authors), base (the model the target was fine-tuned from, on "
                         "the forget questions) or pooled (both).")


def _numbers(text: Optional[str], kind: type, flag: str) -> tuple:
    """Comma-separated numbers of ``kind`` from an option (empty: none), or one clear error naming ``flag``."""
    try:
        return tuple(kind(v) for v in (text or "").split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{flag} must be comma-separated numbers, not {text!r}") from None


def _eco_config(holdout: Optional[str], **settings: Any):
    from ..bench.tofu import EcoTofuConfig

    return EcoTofuConfig(**settings, **({"holdout": holdout} if holdout else {}))


def _finetune_config(epochs: Optional[int], learning_rate: Optional[float], batch_size: Optional[int]):
    from dataclasses import replace

    from ..bench.tofu.run import DEFAULT_FINETUNE

    given = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size}
    return replace(DEFAULT_FINETUNE, **{k: v for k, v in given.items() if v is not None})


@app.command("prepare")
def prepare(
    model: str = BASE_MODEL,
    preset: str = typer.Option("mini", "--preset", "--split", help="mini, forget01, forget05 or forget10."),
    data_dir: Optional[Path] = opt.DATA_DIR,
    authors: Optional[int] = AUTHORS,
    epochs: Optional[int] = opt.EPOCHS,
    learning_rate: Optional[float] = opt.LEARNING_RATE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    parallel: bool = opt.PARALLEL,
) -> None:
    """Fine-tune the target (all training authors) and retain (no forget authors) models, or reuse cached ones."""
    from ..bench.tofu import TofuRunConfig, load_splits, prepare_models

    quiet_transformers()
    with errors():
        config = TofuRunConfig(preset=preset, model=model, authors=authors)
        splits = load_splits(config.resolved_preset(), data_dir)
        with progress("preparing") as report_progress:
            prepared = prepare_models(splits, model, _finetune_config(epochs, learning_rate, batch_size),
                                      parallel=parallel, progress=report_progress)
        tofu_models_table(f"TOFU {splits.preset.name} models from {model}", prepared)


@app.command("eval")
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Model folder (e.g. a prepared target), embedded default or hub id."),
    guard: Optional[Path] = typer.Option(None, "--guard", "-g", help="Guard folder; without it the model is scored bare."),
    preset: str = typer.Option("mini", "--preset", help="Which questions to score: mini, forget01, forget05 or forget10."),
    data_dir: Optional[Path] = opt.DATA_DIR,
    reference: Optional[Path] = typer.Option(None, "--reference", help="The retain model's evaluation JSON (for forget quality)."),
    authors: Optional[int] = typer.Option(None, "--authors", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N questions of each set (smoke runs)."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the per-question JSON here."),
) -> None:
    """Score a model, guarded or not, with TOFU's published metrics."""
    from ..bench.tofu import TofuEvalConfig, TofuRunConfig, evaluate_model, load_splits
    from ..io import atomic_write_json

    quiet_transformers()
    with errors():
        splits = load_splits(TofuRunConfig(preset=preset, authors=authors).resolved_preset(), data_dir)
        with progress("evaluating") as report_progress:
            evaluation = evaluate_model(
                model, splits, guard=str(guard) if guard else None, reference=str(reference) if reference else None,
                config=TofuEvalConfig(max_new_tokens=max_new_tokens), limit=limit, progress=report_progress,
            )
        if output is not None:
            atomic_write_json(output, evaluation.to_dict())
        tofu_table({evaluation.model: evaluation.summary}, f"TOFU {splits.preset.name}")
        if output is not None:
            out.print(f"per-question values written to {output}")


@app.command("run")
def run(
    preset: str = PRESET,
    model: str = BASE_MODEL,
    data_dir: Optional[Path] = opt.DATA_DIR,
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/tofu-PRESET)."),
    authors: Optional[int] = AUTHORS,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N questions of each set (smoke runs)."),
    epochs: Optional[int] = opt.EPOCHS,
    learning_rate: Optional[float] = opt.LEARNING_RATE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations the strength search may make."),
    tokens: str = typer.Option("entities", "--tokens", help="Tokens ECO corrupts: entities (all_but_last where none, or everywhere if entities cannot reach the objective) or all_but_last."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    seed: int = opt.SEED,
    holdout: Optional[str] = HOLDOUT,
    forget_answers: str = FORGET_ANSWERS,
    reference: str = REFERENCE,
    parallel: bool = opt.PARALLEL,
) -> None:
    """The whole TOFU protocol: prepare the models, evaluate retain and target, fit ECO, evaluate it, report."""
    from ..bench.tofu import TofuEvalConfig, TofuRunConfig, run_tofu, tofu_fit_config

    quiet_transformers()
    with errors():
        config = TofuRunConfig(
            preset=preset, model=model, data_dir=str(data_dir) if data_dir else None,
            output=str(output or opt.results_path(f"tofu-{preset}")), authors=authors, limit=limit,
            finetune=_finetune_config(epochs, learning_rate, batch_size),
            evaluation=TofuEvalConfig(max_new_tokens=max_new_tokens),
            eco=_eco_config(holdout, forget_answers=forget_answers, reference=reference, tokens=tokens, fit=tofu_fit_config(search__budget=budget, seed=seed)),
            parallel=parallel,
        )
        with progress("TOFU") as report_progress:
            report = run_tofu(config, report_progress)
        tofu_table(report.summaries, f"TOFU {report.config['preset']['name']}, {model}")
        tofu_checks(report.checks)
        out.print(f"{report.seconds['total'] / 60:.1f} min; report, per-question JSON, guard and plot in {config.output}")


@app.command("sweep")
def sweep(
    strengths: str = typer.Option("0,3,10,30,50,100,200,300", "--strengths", help="Comma-separated noise strengths to score."),
    preset: str = PRESET,
    model: str = BASE_MODEL,
    data_dir: Optional[Path] = opt.DATA_DIR,
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/tofu-PRESET-sweep)."),
    authors: Optional[int] = AUTHORS,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score the retain model on only the first N questions of each set (smoke runs)."),
    epochs: Optional[int] = opt.EPOCHS,
    learning_rate: Optional[float] = opt.LEARNING_RATE,
    batch_size: Optional[int] = opt.BATCH_SIZE,
    tokens: str = typer.Option("entities", "--tokens", help="entities (then all_but_last, as the fit tries them) or one token selection."),
    seed: int = opt.SEED,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated noise seeds to sweep each (default: --seed)."),
    holdout: Optional[str] = HOLDOUT,
    forget_answers: str = FORGET_ANSWERS,
    reference: str = REFERENCE,
    parallel: bool = typer.Option(True, "--parallel/--sequential", help="Train target and retain side by side if not cached."),
) -> None:
    """Forget quality and the fit's surrogate at each strength: does the surrogate peak where forget quality does?"""
    from ..bench.tofu import TofuRunConfig, run_tofu_sweep, tofu_fit_config

    quiet_transformers()
    with errors():
        values, noise_seeds = _numbers(strengths, float, "--strengths"), _numbers(seeds, int, "--seeds")
        config = TofuRunConfig(
            preset=preset, model=model, data_dir=str(data_dir) if data_dir else None,
            output=str(output or opt.results_path(f"tofu-{preset}-sweep")), authors=authors, limit=limit,
            finetune=_finetune_config(epochs, learning_rate, batch_size),
            eco=_eco_config(holdout, forget_answers=forget_answers, reference=reference, tokens=tokens, fit=tofu_fit_config(seed=seed)),
            parallel=parallel,
        )
        with progress("TOFU sweep") as report_progress:
            report = run_tofu_sweep(config, values, report_progress, seeds=noise_seeds)
        tofu_sweep_table(report, model)
        low, high = report.sweep.search_range
        out.print(
            f"surrogate: {report.sweep.surrogate_items} holdout questions; the fit searches σ in [{low:.3g}, {high:.3g}]. "
            f"{report.seconds / 60:.1f} min; sweep.json and sweep.png in {config.output}"
        )


@app.command("compare")
def compare(
    preset: str = PRESET,
    model: str = BASE_MODEL,
    methods: str = typer.Option("eco,ga,gd,kl,npo,npo_rt,simnpo,idkdpo,rmu,prompt", "--methods",
                                help="Comma-separated: eco, prompt, ga, gd, kl, npo, npo_rt, simnpo, idkdpo, rmu, undial."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="ECO's fit seeds (forget quality is reported per seed)."),
    learning_rates: Optional[str] = typer.Option(None, "--learning-rates", help="Grid of every trained method (default per method)."),
    epoch_grid: Optional[str] = typer.Option(None, "--epoch-grid", help="Grid of epochs, e.g. 5,10 (default per method)."),
    unlearn_batch_size: int = typer.Option(8, "--unlearn-batch-size", min=1, help="Forget pairs per unlearning step."),
    schedule: str = typer.Option("linear", "--schedule", help="Learning rate: linear (warmup, decay to zero) or constant "
                                 "(after a warmup): constant trains once per learning rate and scores every epoch count of the grid on the way."),
    data_dir: Optional[Path] = opt.DATA_DIR,
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/tofu-PRESET-compare)."),
    authors: Optional[int] = AUTHORS,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N questions of each set (smoke runs)."),
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations ECO's strength search may make."),
    screen_stride: int = typer.Option(5, "--screen-stride", min=1, help="The grid's cheap screen reads every N-th retain question "
                                      "(and all the others); each method's best point is then evaluated on all of them."),
    tokens: str = typer.Option("all_but_last", "--tokens", help="Tokens ECO corrupts: all_but_last (steadier across noise seeds than entities in the strength sweep, docs/baselines.md), entities (then all_but_last, as the fit tries them) or another token selection."),
    holdout: Optional[str] = HOLDOUT,
    forget_answers: str = FORGET_ANSWERS,
    reference: str = REFERENCE,
    search_dtype: str = typer.Option("auto", "--search-dtype", help="Float type of ECO's strength search: auto (bfloat16 "
                                     "autocast where the CPU has it natively, as the baselines' training), float32 or bfloat16."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    parallel: bool = opt.PARALLEL,
) -> None:
    """ECO against the gradient baselines: a tuned grid per method, ECO over seeds, one table, a plot, JSON.
    Resumable: models, guards and evaluations are cached (under $ECO_UNLEARN_CACHE), and compare.json keeps every
    finished point, seed and method, so run it again to go on, on this machine or one without the cache."""
    from dataclasses import replace

    from ..bench.tofu import TofuEvalConfig, TofuRunConfig, tofu_fit_config
    from ..bench.tofu.compare import CompareConfig, run_compare
    from ..bench.tofu.compare_report import markdown_table
    from ..training.unlearn import UnlearnConfig

    quiet_transformers()
    with errors():
        lrs, epochs = _numbers(learning_rates, float, "--learning-rates"), _numbers(epoch_grid, int, "--epoch-grid")
        names = tuple(m.strip() for m in methods.split(",") if m.strip())
        grids = {}
        if lrs or epochs:
            from ..bench.tofu.compare import DEFAULT_GRID

            grids = {m: {"learning_rate": lrs or DEFAULT_GRID["learning_rate"], "epochs": epochs or DEFAULT_GRID["epochs"]} for m in names}
        run_config = TofuRunConfig(
            preset=preset, model=model, data_dir=str(data_dir) if data_dir else None,
            output=str(output or opt.results_path(f"tofu-{preset}-compare")), authors=authors, limit=limit,
            evaluation=TofuEvalConfig(max_new_tokens=max_new_tokens),
            eco=_eco_config(holdout, forget_answers=forget_answers, reference=reference, tokens=tokens, fit=tofu_fit_config(search__budget=budget, search__dtype=search_dtype)), parallel=parallel,
        )
        config = CompareConfig(
            run=run_config, methods=names, seeds=_numbers(seeds, int, "--seeds"), grids=grids,
            unlearn=replace(UnlearnConfig(), batch_size=unlearn_batch_size, schedule=schedule), screen_stride=screen_stride,
        )
        with progress("TOFU compare") as report_progress:
            report = run_compare(config, report_progress)
        out.print(markdown_table(report.table))
        out.print(f"{report.seconds / 60:.1f} min; compare.json and compare.png in {run_config.output}")
