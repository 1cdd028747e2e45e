"""The classifier under attack: one guard classifier for many RWKU people, fitted on prompts derived from
their names and passages alone (``fitting.about``), then measured on RWKU's probes, which it never saw:
false-negative rate per level, per level-3 type and per attack of the suite; false-positive rate on held-out
MMLU questions and on neighbour probes; classifier time per prompt. ``hardened`` (normalisation, indexed
names, partial names in context, a lexical classifier, augmentation) against the plain classifier (exact
names and the MiniLM encoder, no augmentation)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ...classifier import hardened_people_classifier
from ...classifier.augment import passage_aliases
from ...data.attacks import ATTACKS, apply_attack, user_text
from ...data.mmlu import load_mmlu
from ...data.rwku import RwkuTarget, load_rwku
from ...fitting.about import AboutSpec, about_classifier, about_items, about_negatives, nameless_items
from ...fitting.classifier_fit import fit_classifier
from ...fitting.config import CalibrationConfig, FitConfig
from ...fitting.entity_negatives import entity_matches
from ..environment import environment, load_average
from ..saving import SavedReport
from .latency import ms_per_prompt
from .prompts import probe_prompt

__all__ = ["ClassifierRun", "RwkuClassifierReport", "fit_people_classifier", "measure_classifier", "mmlu_split",
           "neighbor_prompts"]

Progress = Callable[[str, int, int], None]


@dataclass
class ClassifierRun:
    """One classifier's numbers: ``fnr`` by group (``level1``, ``level3/TYPE``, ``attack/NAME``), ``fpr``
    by negative set, with counts, the threshold, seconds per prompt (batch of 32) and the machine's load
    average when it was timed."""

    variant: str
    people: int
    threshold: float
    fnr: dict[str, float]
    positives: dict[str, int]
    fpr: dict[str, float]
    negatives: dict[str, int]
    held_out: dict[str, Any]
    seconds_per_prompt: float
    fit_seconds: float
    load_average: list[float] = field(default_factory=list)
    wrongly_flagged: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RwkuClassifierReport(SavedReport):
    benchmark = "rwku-classifier"
    targets: list[dict[str, Any]]
    runs: list[ClassifierRun]
    environment: dict[str, Any] = field(default_factory=dict)


def mmlu_split(data_dir: str | None) -> tuple[list[str], list[str]]:
    """MMLU questions for training negatives (dev, and every 20th test question) and for measuring (the rest
    of test): disjoint, so the false-positive rate is held out."""
    test = [q.question for q in load_mmlu("test", data_dir=data_dir)]
    dev = [q.question for q in load_mmlu("dev", data_dir=data_dir)]
    return dev + test[::20], [q for i, q in enumerate(test) if i % 20]


def fit_people_classifier(targets: Sequence[RwkuTarget], others: Sequence[RwkuTarget], mmlu_train: Sequence[str],
                          *, hardened: bool, reverse_queries: bool = True, seed: int = 0, progress: Progress | None = None):
    """One classifier for every person of ``targets``, from their names and passages (no probe), with
    negatives from MMLU, the built-in prompts and ``others``' passages. ``hardened``: the people classifier
    (``classifier.people``), with the spellings each passage opens with and nameless questions from the
    passages among the forget prompts (``reverse_queries``: and signature phrases, see ``classifier.signature``);
    else exact names next to the MiniLM encoder, no augmentation."""
    specs = [AboutSpec(t.name, (), " ".join(t.passages)) for t in targets]
    forget = [item for spec in specs for item in about_items(spec, seed=seed, augment=hardened)]
    names = [n for spec in specs for n in spec.names]
    negatives = about_negatives(AboutSpec(" / ".join(names), tuple(names)), mmlu=mmlu_train,
                                other_passages=[" ".join(o.passages) for o in others])
    if hardened:
        forget += nameless_items(specs, seed=seed)
        classifier = hardened_people_classifier([(s.name, *passage_aliases(s.passage, s.name)) for s in specs],
                                                reverse_queries=reverse_queries)
    else:
        classifier = about_classifier(names, hardened=False, seed=seed)
    config = FitConfig(seed=seed, calibration=CalibrationConfig(alpha=0.01, entity_negatives="forget"))
    return fit_classifier(forget, [], config, general=negatives, entities=names, classifier=classifier, progress=progress)


def _positives(targets: Sequence[RwkuTarget], attacks: Sequence[str], seed: int, per_target: int | None) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for t in targets:
        for p in t.select("forget"):
            prompt = probe_prompt(p)
            groups[f"level{p.level}"].append(prompt)
            if p.level == 3:
                groups[f"level3/{p.type}"].append(prompt)
        base = [probe_prompt(p) for p in t.select("forget", [1, 2])][:per_target]
        for attack in attacks:
            rewritten = apply_attack(attack, base, [t.name] * len(base), seed=seed + t.id)
            groups[f"attack/{attack}"] += [user_text(r) for r in rewritten if r is not None]
    return dict(groups)


def neighbor_prompts(targets: Sequence[RwkuTarget]) -> list[str]:
    """The neighbour probes of ``targets``, less those about a person the guard covers itself (Chuck Norris
    is Bruce Lee's neighbour and an RWKU target: guarding both, his probes are in scope)."""
    guarded = {t.name.lower() for t in targets}
    return [probe_prompt(p) for t in targets for p in t.select("neighbor") if p.neighbor.lower() not in guarded]


def measure_classifier(variant: str, fitted, targets: Sequence[RwkuTarget], mmlu_eval: Sequence[str], *,
                       attacks: Sequence[str] | None = None, seed: int = 0, fit_seconds: float = 0.0,
                       latency_prompts: int = 320, attacked_per_target: int | None = None) -> ClassifierRun:
    """FNR of ``fitted`` (a ``ClassifierFit``) on ``targets``' forget probes and attacks (on the first
    ``attacked_per_target`` level-1/2 probes of each target; all when None), FPR on ``mmlu_eval`` (all, and
    those naming none of the people: ``mmlu_unnamed``) and the neighbour probes; attacks: every registered
    one when None."""
    clf, threshold = fitted.classifier, fitted.threshold
    chosen = ATTACKS.names() if attacks is None else attacks
    positives = _positives(targets, chosen, seed, attacked_per_target) if attacks != () else {}
    named = entity_matches(list(mmlu_eval), [t.name for t in targets])
    negatives = {"mmlu": list(mmlu_eval), "mmlu_unnamed": [q for q, n in zip(mmlu_eval, named) if n is None],
                 "neighbor": neighbor_prompts(targets)}
    fnr = {g: float(np.mean(clf.predict_proba(texts) < threshold)) for g, texts in positives.items() if texts}
    fpr, wrong = {}, {}
    for g, texts in negatives.items():
        scores = clf.predict_proba(texts)
        fpr[g] = float(np.mean(scores >= threshold))
        wrong[g] = [texts[i] for i in np.argsort(-scores)[:5] if scores[i] >= threshold]
    return ClassifierRun(
        variant=variant, people=len(targets), threshold=threshold, fnr=fnr,
        positives={g: len(t) for g, t in positives.items()}, fpr=fpr, negatives={g: len(t) for g, t in negatives.items()},
        held_out=fitted.held_out.to_dict() if hasattr(fitted.held_out, "to_dict") else asdict(fitted.held_out),
        seconds_per_prompt=ms_per_prompt(clf.predict_proba, list(mmlu_eval)[:latency_prompts], repeats=1) / 1000,
        fit_seconds=fit_seconds, load_average=load_average(), wrongly_flagged=wrong,
    )


def run_rwku_classifier(target_ids: Sequence[int], *, data_dir: str | None, many: Sequence[int] = (), others: int = 20,
                        mmlu_questions: int = 2000, attacked_per_target: int | None = None, seed: int = 0,
                        progress: Progress | None = None, on_run: Callable[[ClassifierRun], None] | None = None,
                        ) -> RwkuClassifierReport:
    """Plain and hardened classifiers (with and without signature phrases) for ``target_ids``; then hardened ones for each people count in
    ``many`` (the first N RWKU targets, FPR and latency only). Passages of ``others`` RWKU targets outside
    the chosen ones are negatives; ``mmlu_questions`` evenly spaced held-out MMLU questions measure the FPR."""
    everyone = load_rwku(None, data_dir)
    chosen = [t for t in everyone if t.id in set(target_ids)]
    mmlu_train, mmlu_eval = mmlu_split(data_dir)
    mmlu_eval = mmlu_eval[:: max(1, len(mmlu_eval) // mmlu_questions)][:mmlu_questions]
    runs = []
    variants = {"plain": (False, False), "hardened": (True, True), "hardened-no-reverse": (True, False)}
    outside = [t for t in everyone if t.id not in set(target_ids)][:others]
    for variant, (hardened, reverse) in variants.items():
        start = time.perf_counter()
        fitted = fit_people_classifier(chosen, outside, mmlu_train, hardened=hardened, reverse_queries=reverse,
                                       seed=seed, progress=progress)
        runs.append(measure_classifier(variant, fitted, chosen, mmlu_eval, seed=seed,
                                       fit_seconds=time.perf_counter() - start, attacked_per_target=attacked_per_target))
        if on_run is not None:
            on_run(runs[-1])
    for count in many:
        group = everyone[:count]
        outside = everyone[count : count + others] if count + others <= len(everyone) else []
        start = time.perf_counter()
        fitted = fit_people_classifier(group, outside, mmlu_train, hardened=True, seed=seed, progress=progress)
        runs.append(measure_classifier(f"hardened-{count}", fitted, group, mmlu_eval, attacks=(), seed=seed,
                                       fit_seconds=time.perf_counter() - start))
        if on_run is not None:
            on_run(runs[-1])
    return RwkuClassifierReport(
        targets=[{"id": t.id, "name": t.name} for t in chosen], runs=runs, environment=environment(seed=seed),
    )
