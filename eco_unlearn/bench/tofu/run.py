"""The TOFU protocol end to end: prepare the target and retain models, fit ECO, evaluate, report.

``prepare_models`` fine-tunes the base model twice (on every training author: the *target*; without the
forget authors: the *retain* model) and caches both, keyed by the base model, the training rows and the
settings, so later runs reuse them. ``run_tofu`` then evaluates both, fits a guard on the target with
nothing but what a user has, evaluates the guarded target, and writes per-question JSON, a summary and
a plot. ``evaluate_model`` scores any model folder, with or without a guard.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ...runtime.guard import Guard
from ...runtime.guarded import GuardedModel
from ...io import atomic_dir, atomic_write_json
from ...models import EMBEDDED_MODELS, cache_dir, fingerprint, load_model
from ..environment import environment
from ..saving import require_matplotlib
from ...training.sft import FinetuneConfig, finetune
from ...parallel import run_parallel
from ...validation import integer
from .data import PRESETS, TofuDataError, TofuPreset, TofuSplits, load_splits
from .eco import EcoTofuConfig, fit_tofu_guard, format_items, load_base
from .evaluate import TofuEvalConfig, TofuEvaluation, evaluate_guarded, evaluate_tofu, summarise
from .report import FLOORS, check_floors, plot_tradeoff

__all__ = ["PreparedModels", "TofuReport", "TofuRunConfig", "evaluate_model", "prepare_models", "run_tofu"]

Progress = Callable[[str, int, int], None]

# SmolLM2-135M on the mini preset: 5 epochs learn the answers (forget ROUGE-L 0.91) but leave the forget truth
# ratios close to the retain model's (KS p = 0.029); by epoch 5 to 8 of this schedule p stays below 0.01.
DEFAULT_FINETUNE = FinetuneConfig(epochs=8, learning_rate=3e-4, batch_size=16)


@dataclass
class TofuRunConfig:
    """One TOFU run. ``authors`` overrides the preset's number of retain authors; ``limit`` evaluates only
    the first questions of each set, and the strength search only the first forget and holdout questions (for
    smoke tests; the numbers are then not comparable). ``parallel``:
    train, then evaluate, the target and retain models side by side in two processes (see ``run_parallel``)."""

    preset: str = "mini"
    model: str = "smollm2"
    data_dir: str | None = None
    cache: str | None = None
    output: str | None = None  # the results folder; run_tofu and the sweep need one
    authors: int | None = None
    limit: int | None = None
    finetune: FinetuneConfig = field(default_factory=lambda: replace(DEFAULT_FINETUNE))
    evaluation: TofuEvalConfig = field(default_factory=TofuEvalConfig)
    eco: EcoTofuConfig = field(default_factory=EcoTofuConfig)
    parallel: bool = True

    def output_folder(self) -> Path:
        """The results folder, checked before any work starts."""
        if not self.output:
            raise TofuDataError("the TOFU run needs an output folder (TofuRunConfig.output, --out) to write its results to")
        return Path(self.output)

    def resolved_preset(self) -> TofuPreset:
        if self.preset not in PRESETS:
            raise TofuDataError(f"unknown TOFU preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        if self.authors is not None:
            integer(self.authors, "authors", minimum=1, error=TofuDataError)
            preset = replace(preset, name=f"{preset.name}-{self.authors}authors", authors=self.authors)
        return preset


@dataclass
class PreparedModels:
    """Folders of the fine-tuned target and retain models, and what their training did."""

    target: Path
    retain: Path
    training: dict[str, Any]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:48] or "model"


def digest(data: Any) -> str:
    """A short, stable key of JSON-able ``data``: how cached models, guards and evaluations are named."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_key(name: str, model: Any) -> str:
    base = name if name in EMBEDDED_MODELS else Path(name).name or name
    return f"{_slug(base)}-{fingerprint(model).embedding_sha256[:12]}"


def _train(
    model: str, cache: str | None, rows: list[tuple[str, str]], config: FinetuneConfig, chat: bool, path: Path,
    signature: dict[str, Any], label: str, *, progress: Progress | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on ``rows`` and save it to ``path`` (resuming from its checkpoint)."""
    net, tok = load_model(model, cache=cache)
    checkpoint = path.with_name(path.name + ".checkpoint")
    result = finetune(
        net, tok, rows, config, chat=chat, checkpoint=checkpoint,
        progress=(lambda step, total, loss: progress(label, step, total)) if progress else None,
    )
    with atomic_dir(path) as tmp:
        net.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(tmp / "prepare.json", {"signature": signature, "result": result.to_dict(), "base": model})
    shutil.rmtree(checkpoint, ignore_errors=True)
    return result.to_dict()


def prepare_models(
    splits: TofuSplits,
    model: str = "smollm2",
    config: FinetuneConfig | None = None,
    *,
    cache: str | None = None,
    parallel: bool = True,
    progress: Progress | None = None,
) -> PreparedModels:
    """Fine-tune ``model`` into the target (all training authors) and retain (without the forget authors)
    models of ``splits``, or reuse them from the cache when the same training was done before.

    ``parallel``: train both at once in two processes, each on half the CPU cores (see ``run_parallel``).
    An interrupted fine-tune resumes from its last finished epoch.
    """
    config = config or replace(DEFAULT_FINETUNE)
    config.validate()
    base, tokenizer = load_model(model, cache=cache)
    chat = bool(tokenizer.chat_template)
    root = cache_dir(cache) / "tofu" / _model_key(model, base)
    del base
    training: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    jobs = {}
    for role, items in (("retain", splits.retain_train), ("target", splits.target_train)):
        rows = [(i.prompt, i.answer) for i in format_items(items, chat)]
        signature = {"finetune": asdict(config), "chat": chat, "rows": digest(rows), "examples": len(rows)}
        path = root / f"{splits.preset.name}-{role}-{digest(signature)}"
        paths[role] = path
        record = path / "prepare.json"
        if record.is_file() and json.loads(record.read_text()).get("signature") == signature:
            training[role] = {**json.loads(record.read_text())["result"], "cached": True}
            continue
        jobs[role] = partial(_train, model, cache, rows, config, chat, path, signature, f"fine-tune {role} ({len(rows)} pairs)")
    for role, result in run_parallel(jobs, parallel=parallel, progress=progress).items():
        training[role] = {**result, "cached": False}
    return PreparedModels(paths["target"], paths["retain"], training)


def tofu_eval_sets(splits: TofuSplits, chat: bool, limit: int | None) -> dict[str, list]:
    """The four evaluation sets as the model sees them (``format_items``), the first ``limit`` of each."""
    return {name: format_items(items[:limit] if limit else items, chat) for name, items in splits.eval_sets.items()}


def _evaluation_path(folder: Path, splits: TofuSplits, config: TofuEvalConfig, limit: int | None) -> Path:
    key = digest({"config": asdict(config), "limit": limit, "sets": {k: len(v) for k, v in splits.eval_sets.items()}, "preset": splits.preset.name})
    return folder / f"tofu-eval-{key}.json"


def _evaluate_bare(
    folder: Path, name: str, splits: TofuSplits, config: TofuEvalConfig, limit: int | None, *, progress: Progress | None = None
) -> TofuEvaluation:
    """Evaluate the unguarded model in ``folder`` and cache the per-question values next to it."""
    model, tokenizer = load_model(folder)
    chat = bool(tokenizer.chat_template) if config.chat is None else config.chat
    evaluation = evaluate_tofu(GuardedModel(model, tokenizer), tofu_eval_sets(splits, chat, limit), name=name, config=config, progress=progress)
    atomic_write_json(_evaluation_path(folder, splits, config, limit), evaluation.to_dict())
    return evaluation


def bare_evaluations(
    folders: dict[str, Path], splits: TofuSplits, config: TofuEvalConfig, limit: int | None, *, parallel: bool,
    progress: Progress | None,
) -> dict[str, TofuEvaluation]:
    """Evaluations of the unguarded models in ``folders`` (name -> folder): from the cache next to each
    model, else computed (side by side when ``parallel``) and cached."""
    done, jobs = {}, {}
    for name, folder in folders.items():
        path = _evaluation_path(folder, splits, config, limit)
        if path.is_file():
            done[name] = TofuEvaluation.from_dict({**json.loads(path.read_text()), "model": name})
        else:
            jobs[name] = partial(_evaluate_bare, folder, name, splits, config, limit)
    done.update(run_parallel(jobs, parallel=parallel, progress=progress))
    return {name: done[name] for name in folders}


@dataclass
class TofuReport:
    """Summaries of the retain model, the target and the ECO-guarded target, with the checks against the
    issue's floors, timings and where everything was written."""

    config: dict[str, Any]
    summaries: dict[str, dict[str, float]]
    checks: dict[str, Any]
    fit: dict[str, Any]
    training: dict[str, Any]
    seconds: dict[str, float]
    files: dict[str, str]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tofu(config: TofuRunConfig | None = None, progress: Progress | None = None) -> TofuReport:
    """Prepare (or reuse) the models, evaluate retain and target, fit and evaluate ECO, write the report.

    Writes the folder ``config.output``: ``retain.json``, ``target.json``, ``eco.json`` (per question),
    ``guard/`` (the fitted guard), ``report.json`` and ``tofu.png``. The folder is replaced as a whole
    when the run succeeds, so a run that fails leaves the previous results intact.
    """
    config = config or TofuRunConfig()
    clock = {"start": time.perf_counter()}
    config.output_folder()  # no output folder: fail before any work
    require_matplotlib()  # the run ends with a plot: no bench extra, fail before any work
    preset = config.resolved_preset()
    splits = load_splits(preset, config.data_dir)
    prepared = prepare_models(
        splits, config.model, config.finetune, cache=config.cache, parallel=config.parallel, progress=progress
    )
    clock["prepare"] = time.perf_counter()

    bare = bare_evaluations(
        {"retain": prepared.retain, "target": prepared.target}, splits, config.evaluation, config.limit,
        parallel=config.parallel, progress=progress,
    )
    retain, target = bare["retain"], bare["target"]
    reference = retain.truth_ratios()
    retain.summary = summarise(retain.items, reference)
    target.summary = summarise(target.items, reference)
    clock["evaluate"] = time.perf_counter()

    model, tokenizer = load_model(prepared.target)
    chat = bool(tokenizer.chat_template) if config.evaluation.chat is None else config.evaluation.chat
    base = load_base(config.eco, config.model, config.cache)
    fit, details = fit_tofu_guard(model, tokenizer, splits, config.eco, chat=chat, limit=config.limit, base=base, progress=progress)
    clock["fit"] = time.perf_counter()
    eco = evaluate_guarded(  # the rows of prompts the guard passes are the target's own
        GuardedModel(model, tokenizer, fit.guard), tofu_eval_sets(splits, chat, config.limit), target,
        name="eco", retain_truth_ratios=reference, config=config.evaluation, progress=progress,
    )
    clock["eco"] = time.perf_counter()

    out = config.output_folder()
    evaluations = {"retain": retain, "target": target, "eco": eco}
    report = TofuReport(
        config=config_dict(config, preset),
        summaries={k: v.summary for k, v in evaluations.items()},
        checks=check_floors(target.summary, eco.summary),
        fit={"report": fit.report.to_dict(), **details},
        training=prepared.training,
        seconds={
            "prepare": clock["prepare"] - clock["start"],
            "evaluate_retain_and_target": clock["evaluate"] - clock["prepare"],
            "fit": clock["fit"] - clock["evaluate"],
            "evaluate_eco": clock["eco"] - clock["fit"],
            "total": time.perf_counter() - clock["start"],
        },
        files={
            "target_model": str(prepared.target), "retain_model": str(prepared.retain), "guard": str(out / "guard"),
            **{name: str(out / f"{name}.json") for name in evaluations}, "plot": str(out / "tofu.png"),
        },
        environment=environment(),
    )
    with atomic_dir(out) as tmp:  # the results of one run replace the previous ones as a whole
        for name, evaluation in evaluations.items():
            atomic_write_json(tmp / f"{name}.json", evaluation.to_dict())
        fit.guard.save(tmp / "guard")
        plot_tradeoff(report.summaries, tmp / "tofu.png", title=f"TOFU {preset.name}, {config.model}")
        atomic_write_json(tmp / "report.json", report.to_dict())
    return report


def config_dict(config: TofuRunConfig, preset: TofuPreset) -> dict[str, Any]:
    """A run's settings as saved with its results: the config, the resolved preset and the floors."""
    return {**asdict(config), "preset": asdict(preset), "floors": FLOORS}


def evaluate_model(
    model: str,
    splits: TofuSplits,
    *,
    guard: str | None = None,
    reference: str | None = None,
    config: TofuEvalConfig | None = None,
    limit: int | None = None,
    cache: str | None = None,
    progress: Progress | None = None,
) -> TofuEvaluation:
    """Evaluate ``model`` (a folder, hub id or embedded name), guarded by the guard folder ``guard`` if
    given. ``reference``: a saved evaluation JSON of the retain model, for forget quality."""
    config = config or TofuEvalConfig()
    ratios = None
    if reference is not None:
        path = Path(reference)
        if not path.is_file():
            raise TofuDataError(f"reference evaluation {path} does not exist (give the retain model's JSON, e.g. retain.json)")
        try:
            ratios = TofuEvaluation.from_dict(json.loads(path.read_text())).truth_ratios()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TofuDataError(f"{path} is not a TOFU evaluation written by eco-unlearn ({exc})") from None
    loaded = Guard.load(guard) if guard else None
    net, tokenizer = load_model(model, cache=cache)
    chat = bool(tokenizer.chat_template) if config.chat is None else config.chat
    guarded = GuardedModel(net, tokenizer, loaded)
    name = Path(model).name if guard is None else f"{Path(model).name}+guard"
    return evaluate_tofu(guarded, tofu_eval_sets(splits, chat, limit), name=name, retain_truth_ratios=ratios, config=config, progress=progress)
