"""ECO's side of the TOFU comparison: one guard fitted per seed on the target, from the user's data alone
(the retain model is never read), each evaluated like the baselines' models and cached next to the target.

A seed fitted again with other strength-search settings (a faster search, say) has its cost measured as the
code now runs, and keeps its stored evaluation when the new fit makes the same guard (``same_guard``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...io import as_json, atomic_dir, atomic_write_json
from ...models import load_model
from ...runtime.guarded import GuardedModel
from ..environment import cpu_model
from .baselines import peak_memory
from .data import TofuSplits
from .eco import fit_tofu_guard, load_base
from .evaluate import evaluate_guarded, summarise
from .run import TofuRunConfig, bare_evaluations, digest, tofu_eval_sets

__all__ = ["eco_seeds", "same_guard"]

Progress = Callable[[str, int, int], None]
Record = Callable[[dict[str, Any]], None]


def same_guard(stored: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether a new fit of an ECO seed (``record``) made the guard a stored one holds: the strength search
    only picks the strength (and the token selection, among several candidates), so the same settings
    outside the search, the same strength and the same token selection make the same guard."""
    return (isinstance(stored, dict) and "summary" in stored and "signature" in stored
            and _outside_search(stored["signature"]) == _outside_search(record["signature"])
            and stored.get("strength") == record["strength"]
            and _chosen_tokens(stored) is not None and _chosen_tokens(stored) == _chosen_tokens(record))


def _outside_search(signature: Any) -> Any:
    """An ECO seed's signature without its strength search's settings."""
    signature = as_json(signature)
    if isinstance(signature, dict) and isinstance(signature.get("eco", {}).get("fit"), dict):
        signature["eco"]["fit"].pop("search", None)
    return signature


def _chosen_tokens(entry: dict[str, Any]) -> str | None:
    """The token selection an ECO seed's fit kept; for a seed stored before it was recorded, the one it had
    (None for "entities", which tried two: which won is not known)."""
    if "tokens" in entry:
        return entry["tokens"]
    chosen = entry.get("signature", {}).get("eco", {}).get("tokens")
    return None if chosen == "entities" else chosen


def _eco_seed(run: TofuRunConfig, seed: int, target: Path, splits: TofuSplits, reference: list[float],
              stored: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
    """ECO fitted with ``seed`` on the target (cached with its evaluation next to it; ``stored``: the seed's
    record in an earlier ``compare.json`` for the same models, reused when it was made the same way).

    A stored seed fitted with other search settings is fitted again (its cost measured as the code now runs);
    when that fit makes the same guard (``same_guard``), the stored evaluation is kept instead of evaluating
    the same guard again."""
    eco = run.eco.seeded(seed)
    signature = as_json({"eco": eco.signature(), "limit": run.limit, "evaluation": asdict(run.evaluation), "target": target.name})
    if stored.get("signature") == signature and "summary" in stored:
        return {**stored, "cached": True}
    folder = target.parent / f"{target.name}-eco-{digest(signature)}"
    record_path = folder / "eco.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("signature") != signature:
        model, tokenizer = load_model(target)
        chat = bool(tokenizer.chat_template) if run.evaluation.chat is None else run.evaluation.chat
        began = time.perf_counter()  # the base model's loading is part of the fit when the reference reads it
        with peak_memory() as memory:
            base = load_base(eco, run.model, run.cache)
            fit, details = fit_tofu_guard(model, tokenizer, splits, eco, chat=chat, limit=run.limit, base=base, progress=progress)
        seconds = {"fit": time.perf_counter() - began, **asdict(fit.report.seconds)}
        record = {
            "signature": signature, "seed": seed, "seconds": seconds, "peak_rss_bytes": memory["peak_rss_bytes"], "cpu": cpu_model(),
            "strength": fit.report.strength, "tokens": fit.report.corruption.tokens.strategy,
            "search": _search_record(fit.report), "details": details,
        }
        if same_guard(stored, record):
            record["summary"] = stored["summary"]
            record["evaluation_reused"] = "the stored seed's: this fit, with other search settings, made the same guard"
        else:
            bare = bare_evaluations({"target": target}, splits, run.evaluation, run.limit, parallel=False, progress=progress)["target"]
            record["evaluation"] = evaluate_guarded(
                GuardedModel(model, tokenizer, fit.guard), tofu_eval_sets(splits, chat, run.limit), bare, name=f"eco-seed{seed}",
                retain_truth_ratios=reference, config=run.evaluation, progress=progress,
            ).to_dict()
        with atomic_dir(folder) as tmp:
            fit.guard.save(tmp / "guard")
            atomic_write_json(tmp / "eco.json", record)
    if "evaluation" in record:
        record["summary"] = summarise(record["evaluation"]["items"], reference)
    return record


def _search_record(report: Any) -> dict[str, Any]:
    """What the strength search did: evaluations over every token candidate (each is a full scan), the
    chosen candidate's search, and the fit's verdict with its reasons."""
    trials = [t.to_dict() for t in report.token_candidates]
    return {
        "evaluations": sum(t["evaluations"] for t in trials) if trials else report.search.evaluations,
        "chosen_evaluations": report.search.evaluations, "met_target": report.search.met, "candidates": trials,
        "verdict": report.met, "warnings": list(report.warnings),
    }


def eco_seeds(run: TofuRunConfig, seeds: Sequence[int], target: Path, splits: TofuSplits, reference: list[float],
              stored: dict[str, Any], record: Record, progress: Progress | None = None) -> dict[str, Any]:
    """ECO fitted on ``target`` once per seed and evaluated, as the comparison's entry: every seed, the median
    seed's summary, forget quality's spread and the fit cost. ``stored``: ECO's entry in an earlier
    ``compare.json`` for the same models (its seeds are reused when made the same way); ``record`` gets the
    seeds as they are done."""
    known = {s["seed"]: s for s in stored.get("seeds", [])}
    fitted = []
    for seed in seeds:
        done = _eco_seed(run, seed, target, splits, reference, known.get(seed, {}), progress)
        done.pop("evaluation", None)
        fitted.append(done)
        record({"seeds": fitted})
    quality = [s["summary"]["forget_quality"] for s in fitted]
    median = fitted[int(np.argsort(quality)[len(quality) // 2])]  # the median seed (upper median when even)
    return {
        "seeds": fitted, "summary": median["summary"], "median_seed": median["seed"],
        "forget_quality": {"mean": float(np.mean(quality)), "median": float(np.median(quality)),
                           "min": float(np.min(quality)), "max": float(np.max(quality))},
        "seconds": {"fit_mean": float(np.mean([s["seconds"]["fit"] for s in fitted])),
                    "fit_per_seed": [s["seconds"]["fit"] for s in fitted]},
        "peak_rss_bytes": max(s["peak_rss_bytes"] for s in fitted),
    }
