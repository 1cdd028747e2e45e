"""``run_rwku``: answer RWKU probes with and without a guard, score them, save the report and plots.
Every answer is cached (``answers.jsonl`` in the output folder), so a killed run resumes. With a guard,
only the probes it flags are generated again (``reuse_unflagged``): an unflagged prompt takes the bare
model's path, so its guarded answer is its unguarded one."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ...data.rwku import RwkuProbe, RwkuTarget, load_rwku, parse_target_spec
from ...errors import DatasetError
from ...io import folder_digest
from ...metrics import rouge_l_recall
from ...models import load_model
from ...runtime.guard import Guard
from ...runtime.guarded import GuardedModel
from ..environment import environment
from ..saving import SavedReport
from .answers import Answer, AnswerCache, answer_prompts
from .prompts import probe_prompt
from .score import KNOWN_CUT, ProbeResult, diagnose, probe_results, rank_known_targets, summarise

__all__ = ["RwkuReport", "RwkuRunConfig", "run_rwku", "select_probes"]

Progress = Callable[[str, int, int], None]


@dataclass
class RwkuRunConfig:
    """What to score. ``levels``: forget levels (1-3) and neighbour levels (1-2) to run; ``limit``: at
    most this many probes of each (target, kind, level), for smoke runs; ``neighbors``: score them too;
    ``reuse_unflagged``: a probe the guard does not flag keeps its unguarded answer instead of being
    generated again (False: every probe is generated with the guard in front); ``known_only``: with a guard,
    answer only the known probes (those the unguarded model answers, where the floors are measured), so
    the guarded ROUGE-L recall is over them alone."""

    targets: str = "1-10"
    model: str = "gemma3-270m"
    guard: str | None = None
    data_dir: str | None = None
    output: str = "benchmarks/results/rwku"
    levels: tuple[int, ...] = (1, 2, 3)
    neighbors: bool = True
    limit: int | None = None
    batch_size: int = 16
    reuse_unflagged: bool = True
    known_only: bool = False
    chat: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        parse_target_spec(self.targets)
        if not self.levels or any(level not in (1, 2, 3) for level in self.levels):
            raise DatasetError(f"RWKU levels are 1, 2 and 3, not {self.levels}")
        if self.limit is not None and self.limit < 1:
            raise DatasetError("limit must be at least 1")


@dataclass
class RwkuReport(SavedReport):
    """Per-target and overall summaries (``kind/levelN``, ``forget/level3/TYPE``, ``*/all``), the probes'
    rows, the known-best ranking of the targets run, why known probes went wrong (``diagnosis``, guarded
    runs: ``score.diagnose``), and what it ran on."""

    benchmark = "rwku"
    config: dict[str, Any]
    known_cut: float
    overall: dict[str, dict[str, Any]]
    per_target: dict[str, dict[str, dict[str, Any]]]
    known_ranking: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(repr=False)
    diagnosis: dict[str, dict[str, int]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def results(self) -> list[ProbeResult]:
        return [ProbeResult(**row) for row in self.rows]


def select_probes(targets: Sequence[RwkuTarget], config: RwkuRunConfig) -> list[RwkuProbe]:
    """The probes ``config`` asks for, in target order."""
    chosen = []
    for target in targets:
        sets = [("forget", level) for level in config.levels]
        if config.neighbors:
            sets += [("neighbor", level) for level in config.levels if level < 3]
        for kind, level in sets:
            probes = target.select(kind, [level])
            chosen += probes[: config.limit] if config.limit is not None else probes
    return chosen


def _run_key(model: GuardedModel, guard_dir: str | None) -> str:
    fp = model.model_fingerprint.embedding_sha256[:16]
    return f"{fp}/unguarded" if guard_dir is None else f"{fp}/guard-{folder_digest(guard_dir)}"


def _answers(model, probes, cache, config, label, progress):
    prompts = [probe_prompt(p, model.tokenizer, config.chat) for p in probes]
    return answer_prompts(model, prompts, cache, batch_size=config.batch_size, label=label, progress=progress)


def _guarded_answers(model, probes, before, cache, config, progress):
    """The guarded answers (None for probes not asked: unknown ones under ``config.known_only``); with
    ``config.reuse_unflagged``, only the flagged probes are generated."""
    prompts = [probe_prompt(p, model.tokenizer, config.chat) for p in probes]
    asked = [not config.known_only or rouge_l_recall(p.answer, b.text) >= KNOWN_CUT for p, b in zip(probes, before)]
    if not config.reuse_unflagged:
        answer_prompts(model, [q for q, a in zip(prompts, asked) if a], cache, batch_size=config.batch_size,
                      label="guarded", progress=progress)
        return [cache.get(q) if a else None for q, a in zip(prompts, asked)]
    decisions = model.decide(prompts, chat=config.chat)
    flagged = [q for q, d, a in zip(prompts, decisions, asked) if d.flagged and a]
    answer_prompts(model, flagged, cache, batch_size=config.batch_size, label="guarded (flagged)", progress=progress)
    return [None if not a else cache.get(q) if d.flagged else Answer(b.text, False)
            for q, d, b, a in zip(prompts, decisions, before, asked)]


def run_rwku(config: RwkuRunConfig, progress: Progress | None = None, model: Any = None, tokenizer: Any = None) -> RwkuReport:
    """Answer the selected probes unguarded (and guarded when ``config.guard`` is set), score, save
    ``report.json`` and the plots in ``config.output``. ``model``/``tokenizer``: an already loaded model."""
    start = time.perf_counter()
    targets = load_rwku(config.targets, config.data_dir)
    probes = select_probes(targets, config)
    if model is None:
        model, tokenizer = load_model(config.model, dtype=config.dtype)
    out = Path(config.output)
    bare = GuardedModel(model, tokenizer)
    cache_path = out / "answers.jsonl"
    before = _answers(bare, probes, AnswerCache(cache_path, _run_key(bare, None)), config, "unguarded", progress)
    after = flags = None
    if config.guard is not None:
        guarded = GuardedModel(model, tokenizer, Guard.load(config.guard))
        answers = _guarded_answers(guarded, probes, before, AnswerCache(cache_path, _run_key(guarded, config.guard)), config, progress)
        after, flags = [a and a.text for a in answers], [a and a.flagged for a in answers]
    rows = probe_results(probes, [a.text for a in before], after, flags)
    per_target = {
        str(t.id): {"name": t.name, **summarise([r for r in rows if r.target_id == t.id])} for t in targets
    }
    names = {t.id: t.name for t in targets}
    ranking = [
        {"target": t, "name": names[t], "known_forget_probes": k, "mean_recall": m}
        for t, k, m in rank_known_targets(rows, len(targets))
    ]
    report = RwkuReport(
        config=asdict(config), known_cut=KNOWN_CUT, overall=summarise(rows), per_target=per_target,
        known_ranking=ranking, rows=[asdict(r) for r in rows], diagnosis=diagnose(rows),
        environment=environment(model=config.model, fingerprint=asdict(bare.model_fingerprint)),
        seconds=time.perf_counter() - start,
    )
    report.save(out / "report.json")
    if config.guard is not None:
        from .plots import plot_levels, plot_targets

        plot_levels(report.overall, out / "levels.png", f"RWKU targets {config.targets}, {config.model}, guarded")
        plot_targets(report.per_target, out / "targets.png", f"RWKU, {config.model}, guarded: per target")
    return report
