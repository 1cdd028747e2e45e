"""Strength against forget quality: how well the fit's surrogate tracks the published metric.

For researchers checking the method rather than running it: every forget question is corrupted (no
classifier) at each strength of a grid, with each token selection the fit would try, and its TOFU truth
ratios are scored twice: against the retain model's (forget quality, which a user cannot compute) and
against the surrogate the strength search maximises (the target on the holdout authors). The retain
model is read here only to draw the comparison; ``fit_tofu_guard`` never sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ...runtime.corruption import CorruptionSpec
from ...fitting import every_prompt_guard
from ...runtime.guarded import GuardedModel
from ...io import atomic_dir
from ...metrics import forget_quality
from ...models import load_model
from ...precision import autocast
from ...fitting.search import SearchError
from ..environment import environment
from ..saving import SavedReport, png_figure, require_matplotlib
from .data import TofuSplits, load_splits
from .eco import EcoTofuConfig, format_items, load_base, strength_range, surrogate_objective, token_candidates
from .run import TofuRunConfig, bare_evaluations, config_dict, prepare_models

__all__ = ["StrengthSweep", "SweepReport", "plot_sweep", "run_tofu_sweep", "sweep_strengths"]

Progress = Callable[[str, int, int], None]


@dataclass
class StrengthSweep:
    """The rows of a sweep, with how many holdout items the surrogate had and the fit's search range."""

    rows: list[dict[str, Any]]
    surrogate_items: int
    search_range: tuple[float, float]


def sweep_strengths(
    model: Any,
    tokenizer: Any,
    splits: TofuSplits,
    strengths: Sequence[float],
    retain_truth_ratios: Sequence[float],
    config: EcoTofuConfig | None = None,
    *,
    chat: bool | None = None,
    limit: int | None = None,
    base: Any = None,
    progress: Progress | None = None,
) -> StrengthSweep:
    """One row per (token selection, strength): forget quality against ``retain_truth_ratios``, the
    surrogate's value (what the strength search sees) and the median forget truth ratio. ``limit``: only
    the first forget and holdout questions (smoke runs)."""
    config = config or EcoTofuConfig()
    _check_strengths(strengths)
    chat = bool(tokenizer.chat_template) if chat is None else chat
    with autocast(config.fit.search.dtype, next(model.parameters()).device):  # the fit's precision rule
        objective = surrogate_objective(model, tokenizer, splits, config, chat, limit=limit, base=base)
        guarded = GuardedModel(model, tokenizer)  # one for the sweep: each strength attaches its guard
        objective.prepare(guarded)
        # forget quality is TOFU's: truth ratios on TOFU's own answers, whatever statistic and answers the surrogate scores
        forget = format_items(splits.forget, chat)[:limit] if limit else format_items(splits.forget, chat)
        published = objective.statistic == "truth_ratio" and config.forget_answers == "tofu"
        truth = objective if published else replace(objective, items=forget, statistic="truth_ratio", reference_items=None)
        model_fp = guarded.model_fingerprint
        selections = token_candidates(splits, config)
        rows, total = [], len(selections) * len(strengths)
        for selection in selections:
            for strength in strengths:
                if progress is not None:
                    progress(f"sweep: {selection.strategy} at {strength:.4g}", len(rows), total)
                spec = CorruptionSpec(config.fit.corruption.name, float(strength), config.fit.corruption.params)
                guarded.attach(every_prompt_guard(spec, selection, model_fp, seed=config.fit.seed))
                values = objective.per_item(guarded)
                ratios = values if truth is objective else truth.per_item(guarded)
                rows.append({
                    "tokens": selection.strategy,
                    "seed": config.fit.seed,
                    "strength": float(strength),
                    "forget_quality": forget_quality(ratios, retain_truth_ratios),
                    "surrogate": objective.aggregate(values),
                    "truth_ratio_median": float(np.median(ratios)),
                })
    if progress is not None:
        progress("sweep: done", total, total)
    return StrengthSweep(rows, len(objective.reference_values), strength_range(model, config))


def _check_strengths(strengths: Sequence[float]) -> None:
    if len(strengths) == 0 or any(not np.isfinite(s) or s < 0 for s in strengths):
        raise SearchError(f"strengths must be a non-empty list of finite values >= 0, not {list(strengths)}")


@dataclass
class SweepReport(SavedReport):
    benchmark: ClassVar[str | None] = "tofu-sweep"

    config: dict[str, Any]
    sweep: StrengthSweep
    seconds: float
    environment: dict[str, Any] = field(default_factory=environment)


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str = "TOFU strength sweep") -> Path:
    """Forget quality and surrogate against strength (log), one colour per token selection and one marker per
    noise seed; atomic PNG."""
    seeds = list(dict.fromkeys(r.get("seed", 0) for r in rows))
    with png_figure(path, (6.4, 4.2)) as ax:
        for colour, tokens in zip(("tab:blue", "tab:orange", "tab:green"), dict.fromkeys(r["tokens"] for r in rows)):
            for marker, seed in zip("osd^v<>", seeds):
                mine = sorted((r for r in rows if r["tokens"] == tokens and r.get("seed", 0) == seed and r["strength"] > 0),
                              key=lambda r: r["strength"])
                x, which = [r["strength"] for r in mine], f"{tokens}" + (f", seed {seed}" if len(seeds) > 1 else "")
                ax.plot(x, [r["forget_quality"] for r in mine], "-", marker=marker, color=colour, label=f"{which}: forget quality")
                ax.plot(x, [r["surrogate"] for r in mine], "--", marker=marker, color=colour, alpha=0.5, label=f"{which}: surrogate")
        ax.set_xscale("log")
        ax.set_xlabel("noise strength σ (log)")
        ax.set_ylabel("KS-test p-value")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return Path(path)


def run_tofu_sweep(
    config: TofuRunConfig, strengths: Sequence[float], progress: Progress | None = None, *, seeds: Sequence[int] | None = None
) -> SweepReport:
    """Sweep for a TOFU run's settings: prepare (or reuse) the models and the retain model's bare evaluation,
    then write ``sweep.json`` and ``sweep.png`` to ``config.output`` (replaced as a whole on success).
    ``seeds``: noise seeds to sweep each (default: the fit's), to see how much the noise draw moves both curves."""
    start = time.perf_counter()
    _check_strengths(strengths)  # before any training
    config.output_folder()  # no output folder: fail before any work
    require_matplotlib()  # the run ends with a plot: no bench extra, fail before any work
    preset = config.resolved_preset()
    splits = load_splits(preset, config.data_dir)
    prepared = prepare_models(splits, config.model, config.finetune, cache=config.cache, parallel=config.parallel, progress=progress)
    retain = bare_evaluations(
        {"retain": prepared.retain}, splits, config.evaluation, config.limit, parallel=False, progress=progress
    )["retain"]
    model, tokenizer = load_model(prepared.target)
    chat = bool(tokenizer.chat_template) if config.evaluation.chat is None else config.evaluation.chat
    seeds = list(seeds) if seeds else [config.eco.fit.seed]
    base = load_base(config.eco, config.model, config.cache)
    sweeps = [
        sweep_strengths(
            model, tokenizer, splits, strengths, retain.truth_ratios(), config.eco.seeded(seed),
            chat=chat, limit=config.limit, base=base, progress=progress,
        )
        for seed in seeds
    ]
    sweep = replace(sweeps[0], rows=[row for one in sweeps for row in one.rows])
    report = SweepReport(
        config={**config_dict(config, preset), "strengths": [float(s) for s in strengths], "seeds": seeds},
        sweep=sweep,
        seconds=time.perf_counter() - start,
    )
    with atomic_dir(config.output_folder()) as tmp:
        report.save(tmp / "sweep.json")
        plot_sweep(sweep.rows, tmp / "sweep.png", title=f"TOFU {preset.name}, {config.model}: strength sweep")
    return report
