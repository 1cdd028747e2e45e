"""The MMLU-subset experiment: score the bare model, fit a guard on questions that are never scored,
score the guarded model, and compare forget, related and other subjects.

The classifier trains on prompts of the subject header and question (what ``choice_accuracy`` appends
the lettered choices to): positives are the forget subjects' dev questions and their test questions
after the scored ones; negatives are every other subject's dev questions, the related subjects' unscored
test questions, a few unscored test questions of each other subject, and the built-in everyday prompts.
The strength is searched with the ``choice_accuracy`` objective (letters format) on a few of those
training positives, to chance plus ``tolerance``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...data.items import PromptItem
from ...data.mmlu import McqQuestion, load_mmlu
from ...errors import DatasetError
from ...fitting import FitConfig, fit_guard
from ...fitting.config import SearchConfig
from ...fitting.objectives import make_objective
from ...io import folder_digest
from ...models import load_model
from ...runtime.guard import Guard
from ...runtime.guarded import GuardedModel
from .prompts import header
from .report import McqReport, build_report
from .scoring import METHODS, ScoreCache, question_key, score_questions
from .settings import McqSetting, SampleSizes, by_subject, scored_questions, training_pool

__all__ = ["McqRunConfig", "guard_items", "load_questions", "run_mcq", "saved_scores", "subject_accuracies"]

Progress = Callable[[str, int, int], None]


@dataclass
class McqRunConfig:
    """One run. ``sizes`` bounds the questions scored per subject (the whole test set by default);
    ``strength_items`` forget training questions drive the strength search, ``budget`` evaluations at most;
    ``negatives_per_other`` unscored questions of each other subject train the classifier."""

    setting: McqSetting
    model: str = "gemma3-270m"
    data_dir: str | os.PathLike | None = None
    output: str | os.PathLike = "benchmarks/results/mcq"
    sizes: SampleSizes = field(default_factory=SampleSizes)
    methods: tuple[str, ...] = METHODS
    strength_items: int = 16
    budget: int = 8
    tolerance: float = 0.02
    negatives_per_other: int = 4
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if set(self.setting.forget) & set(self.setting.related):
            raise DatasetError("a subject cannot be both forgotten and related; list it once")
        if not self.setting.forget:
            raise DatasetError("give at least one forget subject (--forget-subjects)")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise DatasetError(f"unknown scoring method(s) {', '.join(unknown) or '(none given)'}; "
                               f"choose from {', '.join(METHODS)}")

    def split(self) -> dict[str, Any]:
        """What decides which questions are scored and which train the guard: a guard fitted for another
        split may have trained on questions this one scores."""
        return {"forget": list(self.setting.forget), "related": list(self.setting.related), **asdict(self.sizes),
                "negatives_per_other": self.negatives_per_other}


def _item(q: McqQuestion) -> PromptItem:
    return PromptItem(header(q) + q.question.strip(), choices=q.choices, answer_index=q.answer, source=q.source)


def guard_items(
    groups: dict[str, list[McqQuestion]], dev: list[McqQuestion], setting: McqSetting, sizes: SampleSizes,
    negatives_per_other: int,
) -> tuple[list[PromptItem], list[PromptItem]]:
    """The classifier's forget and retain items: no question that any setting scores is among them."""
    forget = [q for q in dev if q.subject in setting.forget] + training_pool(groups, setting.forget, sizes)
    others = [s for s in groups if setting.role(s) == "other"]
    retain = [q for q in dev if q.subject not in setting.forget] + training_pool(groups, setting.related, sizes)
    retain += [q for s in others for q in training_pool(groups, [s], sizes)[:negatives_per_other]]
    return [_item(q) for q in forget], [_item(q) for q in retain]


def load_questions(config: McqRunConfig) -> tuple[dict[str, list[McqQuestion]], list[McqQuestion]]:
    """The test questions by subject (in their seeded order) and the dev questions. Bad input is a
    ``DatasetError`` before any model is loaded: an unknown subject of the setting, or a guard saved under
    ``config.output`` for another split of the questions (it may have trained on questions this run scores)."""
    groups = by_subject(load_mmlu("test", data_dir=config.data_dir), config.sizes.seed)
    unknown = [s for s in (*config.setting.forget, *config.setting.related) if s not in groups]
    if unknown:
        raise DatasetError(f"unknown MMLU subject(s) {', '.join(unknown)}; known: {', '.join(groups)}")
    saved = _guard_folder(config) / "guard.json"
    if saved.is_file():
        fitted_for = json.loads(saved.read_text()).get("metadata", {}).get("mcq_split")  # absent in older guards
        if fitted_for is not None and fitted_for != config.split():
            raise DatasetError(f"the guard in {saved.parent} was fitted for another split of the questions "
                               f"({fitted_for}), so it may have trained on questions this run scores; "
                               "give another --out, or delete that folder to refit")
    return groups, load_mmlu("dev", data_dir=config.data_dir)


def _guard_folder(config: McqRunConfig) -> Path:
    return Path(config.output) / f"guard-{config.setting.name}"


def _guard_tag(config: McqRunConfig) -> str:
    """The guarded scores' cache name: the setting and the guard folder's content, so a refit never reads
    the scores of an earlier guard."""
    return f"{config.setting.name}-{folder_digest(_guard_folder(config))}"


def _caches(config: McqRunConfig, guard_tag: str | None = None) -> ScoreCache:
    name = "original" if guard_tag is None else f"guarded-{guard_tag}"
    return ScoreCache(Path(config.output) / "cache" / config.model.replace("/", "_") / f"{name}.jsonl")


def subject_accuracies(config: McqRunConfig, model: Any = None, tokenizer: Any = None,
                       progress: Progress | None = None, groups: dict[str, list[McqQuestion]] | None = None,
                       ) -> dict[str, Any]:
    """The bare model's scores on the questions every subject contributes outside a setting (the
    ``other`` sample): what picks subjects the model knows, before any fit. ``groups``: the test
    questions by subject, if already loaded (``by_subject``)."""
    if groups is None:
        groups = by_subject(load_mmlu("test", data_dir=config.data_dir), config.sizes.seed)
    if model is None:
        model, tokenizer = load_model(config.model)
    questions = scored_questions(groups, None, config.sizes)
    cache = _caches(config)
    scores = score_questions(GuardedModel(model, tokenizer), questions, methods=config.methods, cache=cache,
                             batch_size=config.batch_size, progress=progress)
    return {"questions": questions, "scores": scores}


def _fit(config: McqRunConfig, model: Any, tokenizer: Any, groups: dict[str, list[McqQuestion]],
         dev: list[McqQuestion], progress: Progress | None) -> tuple[Guard, dict[str, Any]]:
    folder = _guard_folder(config)
    if (folder / "guard.json").is_file():
        guard = Guard.load(folder)  # load_questions checked that it was fitted for this split
        return guard, guard.metadata.get("fit_report", {})
    forget, retain = guard_items(groups, dev, config.setting, config.sizes, config.negatives_per_other)
    objective = make_objective(
        "choice_accuracy", forget[len([q for q in dev if q.subject in config.setting.forget]):][: config.strength_items]
        or forget[: config.strength_items], format="letters", tolerance=config.tolerance, chat=False,
        batch_size=config.batch_size,
    )
    fit_config = FitConfig(name=config.setting.name, seed=config.seed, chat=False,
                           search=SearchConfig(budget=config.budget))
    result = fit_guard(model, tokenizer, forget, retain, fit_config, objective=objective, progress=progress)
    result.guard.metadata["mcq_split"] = config.split()
    result.guard.save(folder)
    return result.guard, result.report.to_dict()


def run_mcq(config: McqRunConfig, progress: Progress | None = None,
            questions: tuple[dict[str, list[McqQuestion]], list[McqQuestion]] | None = None) -> McqReport:
    """The whole experiment for ``config.setting``; results (and per-question caches) under ``config.output``.
    ``questions``: what ``load_questions(config)`` returned, if already called."""
    started = time.perf_counter()
    groups, dev = questions if questions is not None else load_questions(config)
    model, tokenizer = load_model(config.model)
    questions = scored_questions(groups, config.setting, config.sizes)
    bare = GuardedModel(model, tokenizer)
    original_cache = _caches(config)
    original = score_questions(bare, questions, methods=config.methods, cache=original_cache,
                               batch_size=config.batch_size, progress=progress)
    guard, fit_report = _fit(config, model, tokenizer, groups, dev, progress)
    strength = guard.targets[0].corruption.strength
    guarded_model = GuardedModel(model, tokenizer, guard)
    guarded = score_questions(guarded_model, questions, methods=config.methods,
                              cache=_caches(config, _guard_tag(config)), reuse=original_cache,
                              batch_size=config.batch_size, progress=progress)
    return build_report(
        config, questions, original, guarded, fit_report, strength=strength,
        model_fingerprint=bare.model_fingerprint.to_dict(), seconds=time.perf_counter() - started,
    )


def saved_scores(config: McqRunConfig) -> tuple[list[McqQuestion], dict, dict, Path]:
    """What ``run_mcq`` left on disk for ``config``: the scored questions, the bare and guarded letters
    scores (``{question_key: QuestionScore}``) and the guard folder."""
    groups, _ = load_questions(config)
    questions = scored_questions(groups, config.setting, config.sizes)
    folder = _guard_folder(config)
    if not (folder / "guard.json").is_file():
        raise DatasetError(f"no guard at {folder}; run `eco-unlearn mcq run` for this setting first")
    caches = _caches(config), _caches(config, _guard_tag(config))
    scores = [{question_key(q): c.get(question_key(q), "letters") for q in questions} for c in caches]
    if any(s is None for per in scores for s in per.values()):
        raise DatasetError("some scored questions have no cached letters score; finish `eco-unlearn mcq run` first")
    return questions, scores[0], scores[1], folder
