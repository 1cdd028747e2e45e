"""The MMLU-subset experiment through lm-evaluation-harness: the same questions as local tasks, scored by
``hf`` and by ``eco`` with the fitted guard, compared question by question with eco-unlearn's own letters
scores; and the wall time of ``eco`` against ``hf`` on questions the guard does not flag, side by side."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ...data.mmlu import McqQuestion
from ...extras import require
from ...models import EMBEDDED_MODELS, resolve_embedded
from ..environment import environment
from ..saving import SavedReport
from .lmeval_tasks import task_name, write_lm_eval_tasks
from .prompts import letter_prefix
from .scoring import QuestionScore, question_key

__all__ = ["LmEvalComparison", "compare_with_lm_eval", "lm_eval_predictions", "run_lm_eval_check", "time_hf_and_eco"]


def _pretrained(model: str) -> str:
    return str(resolve_embedded(model)) if model in EMBEDDED_MODELS else model


def lm_eval_predictions(
    model: str, questions: Sequence[McqQuestion], folder: str | Path, *, guard: str | None = None, batch_size: int = 8,
) -> tuple[dict[str, int], float]:
    """Run ``questions`` as local lm-eval tasks on ``hf`` (no guard) or ``eco`` (``guard``): each question's
    predicted choice (the likeliest continuation), and the wall time of ``simple_evaluate``."""
    require("lm_eval", "lmeval", "running lm-evaluation-harness")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    from ...integrations import lm_eval as _registered  # noqa: F401  # registers the eco model

    prefix = letter_prefix(AutoTokenizer.from_pretrained(_pretrained(model)), max(len(q.choices) for q in questions))
    tasks = write_lm_eval_tasks(questions, folder, prefix)
    args = f"pretrained={_pretrained(model)},device=cpu,dtype=float32,batch_size={batch_size}"
    started = time.perf_counter()
    out = simple_evaluate(model="eco" if guard else "hf", model_args=args + (f",guard={guard}" if guard else ""),
                          tasks=tasks, task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                          log_samples=True, bootstrap_iters=0)
    seconds = time.perf_counter() - started
    by_task: dict[str, list[McqQuestion]] = {}
    for q in questions:
        by_task.setdefault(task_name(q.subject), []).append(q)
    predictions = {}
    for task, items in by_task.items():
        for sample in out["samples"][task]:
            q = items[sample["doc_id"]]
            predictions[question_key(q)] = int(np.argmax([float(r[0][0]) for r in sample["resps"]]))
    return predictions, seconds


@dataclass
class LmEvalComparison(SavedReport):
    """Accuracy per role through lm-eval and through eco-unlearn, and how many predictions agree."""

    setting: str
    model: str
    rows: list[dict[str, Any]]
    agreement: dict[str, float]
    seconds: dict[str, float]
    environment: dict[str, Any] = field(default_factory=environment)
    benchmark: ClassVar[str] = "mcq-lm-eval"


def cached_predictions(model: str, questions: Sequence[McqQuestion], folder: str | Path, *, guard: str | None = None,
                       batch_size: int = 8) -> tuple[dict[str, int], float]:
    """``lm_eval_predictions``, kept in ``folder/<hf|eco>-predictions.json`` and reused for the same questions."""
    import json

    from ...io import atomic_write_json

    path = Path(folder) / f"{'eco' if guard else 'hf'}-predictions.json"
    keys = sorted(question_key(q) for q in questions)
    if path.is_file():
        saved = json.loads(path.read_text())
        if sorted(saved["predictions"]) == keys:
            return saved["predictions"], saved["seconds"]
    predictions, seconds = lm_eval_predictions(model, questions, Path(folder) / "tasks", guard=guard, batch_size=batch_size)
    atomic_write_json(path, {"predictions": predictions, "seconds": seconds})
    return predictions, seconds


def compare_with_lm_eval(
    setting: Any, model: str, questions: Sequence[McqQuestion], original: dict[str, QuestionScore],
    guarded: dict[str, QuestionScore], guard: str, folder: str | Path, batch_size: int = 8,
) -> LmEvalComparison:
    """``hf`` against eco-unlearn's bare letters scores and ``eco`` against its guarded ones, per role."""
    hf, hf_seconds = cached_predictions(model, questions, folder, batch_size=batch_size)
    eco, eco_seconds = cached_predictions(model, questions, folder, guard=guard, batch_size=batch_size)
    rows = []
    for role in ("forget", "related", "other"):
        members = [q for q in questions if setting.role(q.subject) == role]
        if not members:
            continue
        acc = lambda preds: float(np.mean([preds[question_key(q)] == q.answer for q in members]))  # noqa: E731
        rows.append({"role": role, "n": len(members),
                     "lm_eval_hf": acc(hf), "eco_unlearn_original": acc({k: s.prediction for k, s in original.items()}),
                     "lm_eval_eco": acc(eco), "eco_unlearn_guarded": acc({k: s.prediction for k, s in guarded.items()})})
    keys = [question_key(q) for q in questions]
    agreement = {"hf_vs_original": float(np.mean([hf[k] == original[k].prediction for k in keys])),
                 "eco_vs_guarded": float(np.mean([eco[k] == guarded[k].prediction for k in keys]))}
    return LmEvalComparison(setting.name, model, rows, agreement, {"hf": hf_seconds, "eco": eco_seconds})


def time_hf_and_eco(model: str, questions: Sequence[McqQuestion], guard: str, folder: str | Path,
                    repeats: int = 3, batch_size: int = 8) -> dict[str, Any]:
    """Wall time of ``hf`` and ``eco`` (model loading included) on the same local task, side by side:
    ``repeats`` pairs, the order swapped every pair so drift and load from other processes hit both alike.
    The overhead is the median of the per-pair ratios (``ratio``), with the ratio of the sums beside it."""
    import statistics

    times: dict[str, list[float]] = {"hf": [], "eco": []}
    for r in range(repeats):
        for name in (("hf", "eco") if r % 2 == 0 else ("eco", "hf")):
            times[name].append(lm_eval_predictions(model, questions, Path(folder) / "timing",
                                                   guard=guard if name == "eco" else None, batch_size=batch_size)[1])
    pairs = [e / h for e, h in zip(times["eco"], times["hf"])]
    return {"questions": len(questions), "repeats": repeats, "seconds": times, "pair_ratios": pairs,
            "ratio": statistics.median(pairs), "ratio_of_sums": sum(times["eco"]) / sum(times["hf"])}


def run_lm_eval_check(config: Any, timing_questions: int = 16, repeats: int = 3) -> dict[str, Any]:
    """After ``run_mcq``: the comparison through lm-eval on every question the setting scored (forget,
    related and other subjects), and (``repeats`` > 0) the side-by-side timing on ``timing_questions`` other-subject questions the guard
    leaves unflagged. Written to ``<output>/<setting>-lm-eval.json`` (timing kept from an earlier run when
    ``repeats`` is 0)."""
    import json

    from ...io import atomic_write_json
    from .experiment import saved_scores

    questions, original, guarded, guard_dir = saved_scores(config)
    folder = Path(config.output) / f"lm-eval-{config.setting.name}"
    comparison = compare_with_lm_eval(config.setting, config.model, questions, original, guarded, str(guard_dir),
                                      folder, batch_size=config.batch_size)
    path = Path(config.output) / f"{config.setting.name}-lm-eval.json"
    earlier = json.loads(path.read_text()).get("timing_nothing_flagged") if path.is_file() else None
    timing = earlier
    if repeats > 0:
        unflagged = [q for q in questions if config.setting.role(q.subject) == "other"
                     and not guarded[question_key(q)].flagged][:timing_questions]
        timing = time_hf_and_eco(config.model, unflagged, str(guard_dir), folder, repeats, config.batch_size)
    result = {**comparison.to_dict(), "timing_nothing_flagged": timing}
    atomic_write_json(path, result)
    return result
