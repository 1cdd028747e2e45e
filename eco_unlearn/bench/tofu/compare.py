"""ECO against the gradient unlearning baselines on TOFU: one table, the same target, data and metrics.

Every trained method gets a grid (learning rate x epochs). Each grid point is screened cheaply
(probabilities and truth ratios, no generation, on every forget, real-author and world-fact question and
every ``screen_stride``-th retain question: the retain set's long answers are four fifths of the work); the
method's best point, the one with the highest forget quality among those whose screened utility without
ROUGE is at least ``utility_floor`` times the target's on the same questions, is evaluated in full.
Choosing that point reads the retain model (forget quality needs its truth ratios): the baselines get that
oracle, ECO does not; ECO is fitted from the user's data alone, once per seed. The prompting baseline is
the target with a system instruction. Everything is cached next to the target (unlearned models, fitted
guards, evaluations), so a stopped comparison resumes where it was.

``compare.json`` is rewritten after every grid point, ECO seed and method, with what is done and what is
pending; methods it holds stay in its table until a later run redoes them, and for good when a later run
does not ask for them (``carried``), so methods can be added one run at a time. It outlives the cache: a
later run on a machine without the cached models prepares the target and retain models again and, when
their fingerprints match the file's (fine-tuning is seeded), reuses every point, seed and evaluation the
file holds instead of redoing it. A comparison longer than one
session's cache therefore still completes, one committed ``compare.json`` at a time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ...io import as_json, atomic_dir, atomic_write_json
from ...models import fingerprint, load_model
from ...runtime.guarded import GuardedModel
from ...training.methods import METHODS
from ...training.unlearn import SCHEDULES, UnlearnConfig
from ...validation import integer, one_of
from ..environment import cpu_model, environment
from ..saving import SavedReport, require_matplotlib
from .baselines import PROMPT_INSTRUCTION, instructed_tokenizer, unlearn_signatures, unlearned_models
from .data import TofuDataError, TofuSplits, load_splits
from .compare_eco import eco_seeds
from .evaluate import TofuEvalConfig, TofuEvaluation, evaluate_tofu, summarise
from .compare_report import plot_compare, table_rows
from .run import PreparedModels, TofuRunConfig, bare_evaluations, config_dict, digest, tofu_eval_sets, prepare_models

__all__ = ["CompareConfig", "CompareReport", "DEFAULT_GRID", "DEFAULT_METHODS", "run_compare"]

Progress = Callable[[str, int, int], None]
Record = Callable[[dict[str, Any]], None]

DEFAULT_METHODS = ("eco", "ga", "gd", "kl", "npo", "npo_rt", "simnpo", "idkdpo", "rmu", "prompt")
DEFAULT_GRID = {"learning_rate": (1e-5, 3e-5, 1e-4), "epochs": (5, 10)}
# RMU trains one MLP, UNDIAL distils: both need larger steps (UNDIAL's own default is 1e-4)
METHOD_GRIDS = {name: {"learning_rate": (3e-5, 1e-4, 3e-4), "epochs": (5, 10)} for name in ("rmu", "undial")}


@dataclass
class CompareConfig:
    """A comparison. ``run``: the TOFU settings (preset, base model, data, cache, output, evaluation, ECO);
    ``methods``: ``eco``, ``prompt`` and names in ``training.METHODS``; ``seeds``: ECO's fit seeds;
    ``grids``: per-method grids replacing the defaults; ``unlearn``: the loop's shared settings;
    ``params``: per-method hyper-parameters over the method's defaults; ``screen_stride``: the grid's screen
    reads every n-th retain question (1: all; 5: 72 of the mini preset's 360, four per author)."""

    run: TofuRunConfig = field(default_factory=TofuRunConfig)
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    grids: dict[str, dict[str, tuple]] = field(default_factory=dict)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    utility_floor: float = 0.9
    screen_stride: int = 5
    instruction: str = PROMPT_INSTRUCTION

    def grid(self, method: str) -> list[tuple[float, int]]:
        grid = self.grids.get(method) or METHOD_GRIDS.get(method, DEFAULT_GRID)
        return [(float(lr), int(epochs)) for lr in grid["learning_rate"] for epochs in grid["epochs"]]

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in ("eco", "prompt") and m not in METHODS]
        if unknown:
            known = ", ".join(("eco", "prompt", *METHODS))
            raise TofuDataError(f"unknown method(s) {', '.join(unknown)} for tofu compare; known: {known}")
        if "eco" in self.methods and not self.seeds:
            raise TofuDataError("ECO needs at least one seed (--seeds 0,1,2)")
        one_of(self.unlearn.schedule, "schedule", SCHEDULES, error=TofuDataError)
        integer(self.screen_stride, "screen_stride", minimum=1, what="an integer of at least 1", error=TofuDataError)

    def screened(self, splits: TofuSplits) -> TofuSplits:
        """``splits`` as the grid's screen reads them: every ``screen_stride``-th retain question."""
        return replace(splits, retain=splits.retain[:: self.screen_stride])


@dataclass
class CompareReport(SavedReport):
    benchmark: ClassVar[str | None] = "tofu-compare"

    config: dict[str, Any]
    table: list[dict[str, Any]]
    methods: dict[str, Any]
    references: dict[str, dict[str, float]]
    seconds: float
    files: dict[str, str]
    context: dict[str, Any] = field(default_factory=dict)
    retain_truth_ratios: list[float] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unfinished: dict[str, Any] = field(default_factory=dict)
    screen: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=environment)


def _evaluate(folder: Path, name: str, splits: TofuSplits, config: TofuEvalConfig, limit: int | None,
              reference: list[float], progress: Progress | None) -> TofuEvaluation:
    evaluation = bare_evaluations({name: folder}, splits, config, limit, parallel=False, progress=progress)[name]
    evaluation.summary = summarise(evaluation.items, reference)
    return evaluation


def _trained(config: CompareConfig, method: str, target: Path, splits: TofuSplits, reference: list[float],
             screen: dict[str, Any], stored: dict[str, Any], record: Record, progress: Progress | None) -> dict[str, Any]:
    """Every grid point of ``method`` (trained or cached, screened cheaply) and its best point, fully scored.
    ``screen``: how points are screened and the target's screened utility (``_screen``); ``stored``: this
    method's entry in an earlier ``compare.json`` for the same models, whose points screened the same way (and
    full evaluation, if the same point wins) are reused; ``record`` gets the points as they are done."""
    run, cheap = config.run, replace(config.run.evaluation, generate=False)
    screened, target_utility = config.screened(splits), screen["target_utility_no_rouge"]
    known = {(p["learning_rate"], p["epochs"]): p for p in stored.get("points", []) if p.get("screen") == screen}
    points, settings_of = [], {}
    grid = config.grid(method)
    for lr in dict.fromkeys(lr for lr, _ in grid):
        counts = [epochs for rate, epochs in grid if rate == lr]
        settings = settings_of[lr] = replace(config.unlearn, method=method, learning_rate=lr, params=config.params.get(method, {}))
        keys = unlearn_signatures(target, splits, settings, counts, data_dir=run.data_dir)
        kept = {c: known[(lr, c)] for c in counts if known.get((lr, c), {}).get("signature") == keys[c][1]}
        missing = [c for c in counts if c not in kept]
        made = dict(zip(missing, unlearned_models(target, splits, settings, missing, data_dir=run.data_dir, progress=progress))) if missing else {}
        for epochs in counts:
            if epochs in kept:
                point = {**{k: v for k, v in kept[epochs].items() if k != "selected"}, "folder": str(keys[epochs][0]), "cached": True}
            else:
                folder, trained = made[epochs]
                summary = _evaluate(folder, method, screened, cheap, run.limit, reference, progress).summary
                point = {
                    "learning_rate": lr, "epochs": epochs, "folder": str(folder), "signature": trained["signature"],
                    "screen": screen, "summary": summary, "seconds": trained["seconds"], "peak_rss_bytes": trained["peak_rss_bytes"],
                    "cached": trained["cached"], "cpu": cpu_model(),
                    "meets_utility_floor": summary["model_utility_no_rouge"] >= config.utility_floor * target_utility,
                }
            points.append(point)
            record({"points": points})
    eligible = [p for p in points if p["meets_utility_floor"]]
    best = max(eligible or points, key=lambda p: (p["summary"]["forget_quality"], p["summary"]["model_utility_no_rouge"]))
    best["selected"] = True
    if stored.get("best", {}).get("signature") == best["signature"] and "model_utility" in stored.get("summary", {}):
        summary = stored["summary"]
    else:
        folder = Path(best["folder"])
        if not (folder / "unlearn.json").is_file():  # trained by an earlier run on another machine: again
            unlearned_models(target, splits, settings_of[best["learning_rate"]], [best["epochs"]], data_dir=run.data_dir, progress=progress)
        summary = _evaluate(folder, method, splits, run.evaluation, run.limit, reference, progress).summary
    return {
        "points": points, "best": {k: best[k] for k in ("learning_rate", "epochs", "folder", "signature")},
        "floor_met": bool(eligible), "screen": screen, "summary": summary,
        "seconds": {"grid": _grid_seconds(points, config.unlearn.schedule), "best_point": best["seconds"],
                    "mean_point": float(np.mean([p["seconds"] for p in points]))},
        "peak_rss_bytes": max(p["peak_rss_bytes"] for p in points),
    }


def _screen(config: CompareConfig, target: Path, splits: TofuSplits, reference: list[float], progress: Progress | None) -> dict[str, Any]:
    """How grid points are screened, with the target's screened utility without ROUGE (cached next to it)."""
    cheap = replace(config.run.evaluation, generate=False)
    screened = config.screened(splits)
    summary = _evaluate(target, "target", screened, cheap, config.run.limit, reference, progress).summary
    return {"retain_stride": config.screen_stride, "retain_questions": len(screened.retain),
            "target_utility_no_rouge": summary["model_utility_no_rouge"]}


def _grid_seconds(points: list[dict[str, Any]], schedule: str) -> float:
    """Training time of the whole grid: every point's run, or under ``constant`` (one run per learning rate,
    saving its epoch counts on the way) each learning rate's longest point."""
    if schedule != "constant":
        return float(sum(p["seconds"] for p in points))
    longest: dict[float, float] = {}
    for p in sorted(points, key=lambda p: p["epochs"]):
        longest[p["learning_rate"]] = p["seconds"]
    return float(sum(longest.values()))


def _prompted(config: CompareConfig, target: Path, splits: TofuSplits, reference: list[float],
              stored: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
    """The target with a system instruction naming the forget authors (no training)."""
    run = config.run
    instruction = config.instruction.format(authors=", ".join(splits.forget_authors))
    signature = {"instruction": instruction, "limit": run.limit, "evaluation": asdict(run.evaluation)}
    if stored.get("signature") == as_json(signature) and "summary" in stored:
        return stored
    path = target.parent / f"{target.name}-prompt-{digest(signature)}.json"
    if path.is_file():
        evaluation = TofuEvaluation.from_dict(json.loads(path.read_text()))
    else:
        model, tokenizer = load_model(target)
        chat = bool(tokenizer.chat_template) if run.evaluation.chat is None else run.evaluation.chat
        sets = tofu_eval_sets(splits, chat, run.limit)
        if chat:
            tokenizer = instructed_tokenizer(tokenizer, instruction)
        else:  # no system turn to put it in: the instruction opens every prompt
            sets = {k: [replace(i, prompt=f"{instruction}\n{i.prompt}") for i in v] for k, v in sets.items()}
        evaluation = evaluate_tofu(GuardedModel(model, tokenizer), sets, name="prompt", config=run.evaluation, progress=progress)
        atomic_write_json(path, evaluation.to_dict())
    return {"summary": summarise(evaluation.items, reference), "instruction": instruction, "seconds": {"grid": 0.0},
            "signature": as_json(signature),
            "sample_generations": [r["generation"] for r in evaluation.items["forget"][:3]]}


def _context(prepared: PreparedModels, config: CompareConfig) -> dict[str, Any]:
    """What every stored result depends on besides its own settings: the target's and the retain model's
    weights (fingerprints) and how models are scored."""
    found = {}
    for role, folder in (("target", prepared.target), ("retain", prepared.retain)):
        model, _ = load_model(folder)
        found[role] = fingerprint(model).to_dict()
        del model
    return as_json({**found, "evaluation": asdict(config.run.evaluation), "limit": config.run.limit, "preset": config.run.preset})


def _previous(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """The earlier results in ``out`` made for ``context`` (``compare.json``, or ``compare.superseded.json``
    when the run before was on other models, e.g. another CPU kind, whose fine-tunes differ) and the bytes to
    keep as ``compare.superseded.json``: the other file. Two machine kinds can thus take turns at one
    comparison, each resuming its own. Nothing matches: nothing to reuse, and ``compare.json`` is superseded."""
    found: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for name in ("compare.json", "compare.superseded.json"):
        try:
            data = (out / name).read_bytes()
            found[name] = (data, json.loads(data))
        except (OSError, ValueError):
            continue
    for name, (_, previous) in found.items():
        if previous.get("context") == context:
            others = [data for other, (data, _) in found.items() if other != name]
            return previous, (others[0] if others else None)
    kept = found.get("compare.json") or found.get("compare.superseded.json")
    return {}, (kept[0] if kept else None)


def run_compare(config: CompareConfig, progress: Progress | None = None) -> CompareReport:
    """Prepare (or reuse) target and retain, run every method, and write ``compare.json`` and ``compare.png``
    to ``config.run.output`` (replaced whole after every grid point, seed and method: what is finished in
    ``table``, the rest in ``pending`` and ``unfinished``). An earlier ``compare.json`` there for the same
    models is resumed from (see the module's docstring)."""
    began = time.perf_counter()
    config.check()
    out = config.run.output_folder()
    require_matplotlib()
    run = config.run
    preset = run.resolved_preset()
    splits = load_splits(preset, run.data_dir)
    prepared = prepare_models(splits, run.model, run.finetune, cache=run.cache, parallel=run.parallel, progress=progress)
    context = _context(prepared, config)
    previous, superseded = _previous(out, context)
    if previous.get("retain_truth_ratios"):
        reference, references = previous["retain_truth_ratios"], previous["references"]
    else:
        bare = bare_evaluations({"retain": prepared.retain, "target": prepared.target}, splits, run.evaluation, run.limit,
                                 parallel=run.parallel, progress=progress)
        reference = bare["retain"].truth_ratios()
        references = {name: summarise(e.items, reference) for name, e in bare.items()}
    screen = previous.get("screen") if previous.get("screen", {}).get("retain_stride") == config.screen_stride else None
    finished, partial = previous.get("methods", {}), previous.get("unfinished", {})
    # what a method did last: its finished entry, with the points or seeds of a later unfinished run over it
    stored = {m: {**finished.get(m, {}), **partial.get(m, {})} for m in {*finished, *partial}}
    # methods finished earlier on these models stay in the table as they were until this run redoes them,
    # so a run stopped at any moment leaves no finished method out of compare.json
    methods: dict[str, Any] = dict(finished)
    unfinished = {m: partial[m] for m in config.methods if m in partial}
    done: set[str] = set()

    def write() -> CompareReport:
        report = CompareReport(
            config={**config_dict(run, preset), "methods": list(config.methods), "seeds": list(config.seeds),
                    "carried": [m for m in methods if m not in config.methods],
                    "grids": {m: config.grid(m) for m in config.methods if m in METHODS},
                    "unlearn": asdict(config.unlearn), "params": config.params, "utility_floor": config.utility_floor,
                    "screen_stride": config.screen_stride},
            table=table_rows(methods, references), methods=methods, references=references,
            seconds=time.perf_counter() - began,
            files={"target_model": str(prepared.target), "retain_model": str(prepared.retain),
                   "json": str(out / "compare.json"), "plot": str(out / "compare.png")},
            context=context, retain_truth_ratios=list(reference), pending=[m for m in config.methods if m not in done],
            unfinished=unfinished, screen=screen or {},
        )
        with atomic_dir(out) as tmp:
            report.save(tmp / "compare.json")
            plot_compare(methods, references, tmp / "compare.png", title=f"TOFU {preset.name}, {run.model}")
            if superseded is not None:
                (tmp / "compare.superseded.json").write_bytes(superseded)
        return report

    report = write()
    for method in config.methods:
        def record(entry: dict[str, Any], method: str = method) -> None:
            unfinished[method] = entry
            write()

        earlier = stored.get(method, {})
        if method == "eco":
            methods[method] = eco_seeds(run, config.seeds, prepared.target, splits, reference, earlier, record, progress)
        elif method == "prompt":
            methods[method] = _prompted(config, prepared.target, splits, reference, earlier, progress)
        else:
            if screen is None:
                screen = _screen(config, prepared.target, splits, reference, progress)
            methods[method] = _trained(config, method, prepared.target, splits, reference, screen, earlier, record, progress)
        unfinished.pop(method, None)
        done.add(method)
        report = write()
    return report
