"""Classifier benchmark: held-out error rates on the demo target and TOFU forget01, and throughput.

Error rates come from ``fit_classifier`` (split-conformal threshold at ``alpha``, measured on prompts never
used to train or calibrate), over several seeds of the split. On TOFU the forget01 paraphrased questions
are an extra held-out positive set. Throughput is prompts per second of ``predict_proba`` on a fitted
MiniLM classifier, float32 and the automatic dtype side by side.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...classifier import EncoderClassifier
from ...demo import DEMO_ENTITIES, demo_data
from ...fitting import CalibrationConfig, FitConfig, default_classifier, fit_classifier
from ...data.items import general_prompts
from ...errors import TofuDataError
from ..environment import environment
from ..saving import SavedReport

__all__ = ["ClassifierBenchConfig", "run_classifier_bench"]

TOFU_FORGET01_ENTITIES = ("Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov")


@dataclass
class ClassifierBenchConfig:
    data_dir: str | None = None  # the folder holding tofu/; TOFU rows are skipped without it
    seeds: Sequence[int] = (0, 1, 2)
    alpha: float = 0.01
    mode: str = "linear"
    throughput_prompts: int = 2048


@dataclass
class ClassifierBenchReport(SavedReport):
    config: ClassifierBenchConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)


def _row(task: str, variant: str, seed: int, fitted, extra_positives: Sequence[str] = ()) -> dict[str, Any]:
    held = fitted.held_out
    row = {
        "task": task, "variant": variant, "seed": seed, "threshold": fitted.threshold,
        "fpr": held.fpr, "false_positives": held.false_positives, "negatives": held.negatives,
        "fnr": held.fnr, "false_negatives": held.false_negatives, "positives": held.positives,
        "fpr_retain": held.fpr_retain, "missed": held.missed, "wrongly_flagged": held.wrongly_flagged,
    }
    if extra_positives:
        caught = fitted.classifier.predict_proba(list(extra_positives)) >= fitted.threshold
        row.update(paraphrase_fnr=float(1 - caught.mean()), paraphrases=len(extra_positives))
    return row


def run_classifier_bench(config: ClassifierBenchConfig, progress: Callable[[str, int, int], None] | None = None) -> ClassifierBenchReport:
    note = progress or (lambda what, done, total: None)
    report = ClassifierBenchReport(config)
    tofu = Path(config.data_dir) / "tofu" if config.data_dir else None
    if tofu is not None and not (tofu / "forget01.jsonl").is_file():
        raise TofuDataError(f"no TOFU data under {tofu}")
    tasks = [("demo", "entities + MiniLM", DEMO_ENTITIES), ("demo", "MiniLM only", ())]
    if tofu is not None:
        tasks += [("tofu forget01 vs retain99", "entities + MiniLM", TOFU_FORGET01_ENTITIES), ("tofu forget01 vs retain99", "MiniLM only", ())]
        paraphrases = [json.loads(line)["paraphrased_question"] for line in (tofu / "forget01_perturbed.jsonl").read_text().splitlines()]
    data = demo_data()
    total, done = len(tasks) * len(config.seeds) + 2, 0
    for task, variant, entities in tasks:
        for seed in config.seeds:
            note(f"{task}, {variant}, seed {seed}", done, total)
            classifier = default_classifier(entities, mode=config.mode, seed=seed)
            settings = FitConfig(seed=seed, calibration=CalibrationConfig(alpha=config.alpha))
            if task == "demo":
                fitted = fit_classifier(data.forget, data.retain, settings, entities=entities, classifier=classifier)
                report.rows.append(_row(task, variant, seed, fitted))
            else:
                fitted = fit_classifier(tofu / "forget01.jsonl", tofu / "retain99.jsonl", settings, entities=entities, classifier=classifier)
                report.rows.append(_row(task, variant, seed, fitted, paraphrases))
            done += 1
    pool = [i.prompt for i in general_prompts()]
    texts = (pool * (config.throughput_prompts // len(pool) + 1))[: config.throughput_prompts]
    for dtype in ("float32", "auto"):
        note(f"throughput ({dtype})", done, total)
        classifier = EncoderClassifier(dtype=dtype).fit([i.prompt for i in data.forget], [i.prompt for i in data.retain])
        classifier.predict_proba(texts[:64])  # warm-up
        start = time.perf_counter()
        classifier.predict_proba(texts)
        seconds = time.perf_counter() - start
        report.throughput.append({
            "dtype": classifier.encoder.dtype, "requested": dtype, "prompts": len(texts), "seconds": seconds,
            "prompts_per_second": len(texts) / seconds, "batch_size": classifier.encoder.batch_size,
        })
        done += 1
    note("done", total, total)
    report.environment = environment(torch_threads=torch.get_num_threads())
    return report


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pool the seeds of each (task, variant): total errors over total held-out prompts."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["variant"]), []).append(row)
    out = []
    for (task, variant), group in groups.items():
        fp, neg = sum(r["false_positives"] for r in group), sum(r["negatives"] for r in group)
        fn, pos = sum(r["false_negatives"] for r in group), sum(r["positives"] for r in group)
        entry = {"task": task, "variant": variant, "seeds": len(group), "fpr": fp / neg, "false_positives": fp,
                 "negatives": neg, "fnr": fn / pos, "false_negatives": fn, "positives": pos,
                 "worst_seed_fpr": max(r["fpr"] for r in group), "worst_seed_fnr": max(r["fnr"] for r in group)}
        if "paraphrase_fnr" in group[0]:
            entry["paraphrase_fnr"] = float(np.mean([r["paraphrase_fnr"] for r in group]))
        out.append(entry)
    return out
