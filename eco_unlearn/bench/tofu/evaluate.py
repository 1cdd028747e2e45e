"""Score a (possibly guarded) model on TOFU with the published metric definitions.

Names and definitions follow the open-unlearning framework (``tofu`` evaluation):

- ``*_Q_A_Prob``: mean length-normalised probability of the answer, ``exp(-avg_loss)``.
- ``ra_/wf_Q_A_Prob_normalised``: for real authors and world facts, P(answer) / (P(answer) + sum of
  P(perturbed answers)), length-normalised probabilities.
- ``*_Q_A_ROUGE``: mean ROUGE-L recall of the greedy generation against the answer.
- truth ratio per question: P(perturbed) / P(true), the perturbed answers averaged in log space; the true
  answer is the paraphrased one where the split has it (forget, retain), else the answer itself.
  Forget aggregates with ``mean(min(tr, 1/tr))``, the other sets with ``mean(max(0, 1 - tr))``.
- ``forget_quality``: KS-test p-value between the forget truth ratios and the retain model's.
- ``model_utility``: harmonic mean of the nine retain, real-author and world-fact numbers;
  ``model_utility_no_rouge`` of the six that need no generation (for cheap scoring, ``generate=False``).

Every per-question value is kept (``TofuEvaluation.items``), so any statistic can be recomputed from the
saved JSON without the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ...runtime.guarded import GuardedModel
from ...runtime.shared_prefix import score_shared
from ...data.items import PromptItem
from ...errors import TofuDataError
from ...metrics import forget_quality, harmonic_mean, mean_nll, rouge_l_recall

__all__ = [
    "EVAL_SETS", "PROBABILITY_UTILITY_KEYS", "UTILITY_KEYS", "TofuEvalConfig", "TofuEvaluation", "evaluate_guarded",
    "evaluate_tofu", "summarise",
]

EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")
_PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
UTILITY_KEYS = (
    "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio",
)

# model utility without the three ROUGE terms: what a score without generation can compare
PROBABILITY_UTILITY_KEYS = tuple(k for k in UTILITY_KEYS if not k.endswith("_ROUGE"))

Progress = Callable[[str, int, int], None]


@dataclass
class TofuEvalConfig:
    """How generations and scores are computed. ``chat``: use the chat template (default: when the
    tokenizer has one); otherwise questions are expected already formatted (``Question: ...\\nAnswer:``)."""

    max_new_tokens: int = 96
    batch_size: int = 16
    chat: bool | None = None
    shared_prefix: bool = True  # a question's answers share one prefill (score_shared); equal up to float rounding
    generate: bool = True  # False: probabilities and truth ratios only (no ROUGE, no model_utility): a cheap score


@dataclass
class TofuEvaluation:
    """Per-question values of every evaluation set and their summary."""

    model: str
    summary: dict[str, float]
    items: dict[str, list[dict[str, Any]]]
    config: dict[str, Any] = field(default_factory=dict)

    def truth_ratios(self, split: str = "forget") -> list[float]:
        return [row["truth_ratio"] for row in self.items[split]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TofuEvaluation":
        return cls(data["model"], data["summary"], data["items"], data.get("config", {}))


def _order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length, so a batch pads little."""
    return sorted(range(len(lengths)), key=lambda i: lengths[i])


def _score_nll(model: GuardedModel, pairs: list[tuple[str, str]], chat: bool, batch_size: int) -> list[float]:
    """Mean NLL per token of each (prompt, continuation) pair, in input order."""
    order = _order([len(p) + len(c) for p, c in pairs])
    logprobs = model.score([pairs[i][0] for i in order], [pairs[i][1] for i in order], chat=chat, batch_size=batch_size)
    out = [0.0] * len(pairs)
    for rank, i in enumerate(order):
        out[i] = mean_nll(logprobs[rank].tolist())
    return out


def _answer_nll(model: GuardedModel, items: Sequence[PromptItem], groups: list[list[str]], chat: bool, config: TofuEvalConfig) -> list[float]:
    """Mean NLL per token of every answer in ``groups`` (one group per item), flattened in order."""
    if not config.shared_prefix:
        return _score_nll(model, [(i.prompt, a) for i, group in zip(items, groups) for a in group], chat, config.batch_size)
    order = _order([len(i.prompt) for i in items])
    scored = score_shared(model, [items[i].prompt for i in order], [groups[i] for i in order], chat=chat, batch_size=config.batch_size)
    by_item: list[list[float]] = [[] for _ in items]
    for rank, i in enumerate(order):
        by_item[i] = [mean_nll(lp.tolist()) for lp in scored[rank]]
    return [v for values in by_item for v in values]


def _generations(model: GuardedModel, items: Sequence[PromptItem], chat: bool, config: TofuEvalConfig) -> tuple[list, list]:
    """Greedy generations (None each without ``config.generate``) and the guard's decisions, in item order."""
    order = _order([len(i.prompt) for i in items])
    prompts = [items[i].prompt for i in order]
    if config.generate:
        texts, decisions = model.generate(
            prompts, chat=chat, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, return_decisions=True
        )
    else:
        texts, decisions = [None] * len(prompts), model.decide(prompts, chat=chat)
    generations, flags = [None] * len(items), [None] * len(items)
    for rank, i in enumerate(order):
        generations[i], flags[i] = None if texts[rank] is None else texts[rank].strip(), decisions[rank]
    return generations, flags


def _evaluate_set(model: GuardedModel, split: str, items: Sequence[PromptItem], config: TofuEvalConfig, chat: bool) -> list[dict[str, Any]]:
    lead = "" if chat else " "
    groups = []
    for item in items:
        true = item.paraphrased_answer if split in ("forget", "retain") else item.answer
        groups.append([lead + a for a in (item.answer, true, *item.perturbed_answers)])
    nll = _answer_nll(model, items, groups, chat, config)
    generations, flags = _generations(model, items, chat, config)
    rows, start = [], 0
    for i, item in enumerate(items):
        n = 2 + len(item.perturbed_answers)
        answer_nll, true_nll, perturbed = nll[start], nll[start + 1], nll[start + 2 : start + n]
        start += n
        rows.append({
            "question": item.prompt,
            "answer": item.answer,
            "generation": generations[i],
            "answer_nll": answer_nll,
            "true_nll": true_nll,
            "perturbed_nll": perturbed,
            "prob": math.exp(-answer_nll),
            "prob_normalised": math.exp(-answer_nll) / (math.exp(-answer_nll) + sum(math.exp(-p) for p in perturbed)),
            "truth_ratio": math.exp(true_nll - float(np.mean(perturbed))),
            "rouge_l_recall": None if generations[i] is None else rouge_l_recall(item.answer, generations[i]),
            "flagged": flags[i].flagged,
            "targets": flags[i].targets,
        })
    return rows


def summarise(items: dict[str, list[dict[str, Any]]], retain_truth_ratios: Sequence[float] | None = None) -> dict[str, float]:
    """The published TOFU numbers from per-question values (``forget_quality`` only when the retain
    model's forget truth ratios are given)."""
    summary: dict[str, float] = {}
    for split, rows in items.items():
        prefix = _PREFIX[split]
        ratios = np.array([r["truth_ratio"] for r in rows])
        if split in ("real_authors", "world_facts"):
            summary[f"{prefix}_Q_A_Prob_normalised"] = float(np.mean([r["prob_normalised"] for r in rows]))
        else:
            summary[f"{prefix}_Q_A_Prob"] = float(np.mean([r["prob"] for r in rows]))
        if all(r["rouge_l_recall"] is not None for r in rows):
            summary[f"{prefix}_Q_A_ROUGE"] = float(np.mean([r["rouge_l_recall"] for r in rows]))
        if split == "forget":
            summary["forget_truth_ratio"] = float(np.mean(np.minimum(ratios, 1 / ratios)))
        else:
            summary[f"{prefix}_Truth_Ratio"] = float(np.mean(np.maximum(0.0, 1 - ratios)))
        summary[f"{prefix}_flagged"] = float(np.mean([r["flagged"] for r in rows]))
    if all(k in summary for k in UTILITY_KEYS):
        summary["model_utility"] = harmonic_mean([summary[k] for k in UTILITY_KEYS])
    if all(k in summary for k in PROBABILITY_UTILITY_KEYS):
        summary["model_utility_no_rouge"] = harmonic_mean([summary[k] for k in PROBABILITY_UTILITY_KEYS])
    if retain_truth_ratios is not None and "forget" in items:
        summary["forget_quality"] = forget_quality([r["truth_ratio"] for r in items["forget"]], retain_truth_ratios)
    return summary


def evaluate_tofu(
    model: GuardedModel,
    eval_sets: dict[str, Sequence[PromptItem]],
    *,
    name: str = "model",
    retain_truth_ratios: Sequence[float] | None = None,
    config: TofuEvalConfig | None = None,
    progress: Progress | None = None,
) -> TofuEvaluation:
    """Score ``model`` (guarded or bare) on TOFU's evaluation sets and summarise with the published metrics.

    ``eval_sets`` maps ``forget``, ``retain``, ``real_authors``, ``world_facts`` to items with answers and
    perturbed answers (paraphrased answers for forget and retain). ``retain_truth_ratios``: the retain
    model's forget truth ratios, for ``forget_quality``.
    """
    config = config or TofuEvalConfig()
    chat = bool(model.tokenizer.chat_template) if config.chat is None else config.chat
    unknown = sorted(set(eval_sets) - set(EVAL_SETS))
    if unknown:
        raise TofuDataError(f"unknown TOFU evaluation set(s) {', '.join(unknown)}; known: {', '.join(EVAL_SETS)}")
    items: dict[str, list[dict[str, Any]]] = {}
    for done, split in enumerate(eval_sets):
        if progress is not None:
            progress(f"{name}: {split}", done, len(eval_sets))
        items[split] = _evaluate_set(model, split, eval_sets[split], config, chat)
    if progress is not None:
        progress(f"{name}: done", len(eval_sets), len(eval_sets))
    return TofuEvaluation(name, summarise(items, retain_truth_ratios), items, {**asdict(config), "chat": chat})


def evaluate_guarded(
    model: GuardedModel,
    eval_sets: dict[str, Sequence[PromptItem]],
    bare: TofuEvaluation,
    *,
    name: str = "model",
    retain_truth_ratios: Sequence[float] | None = None,
    config: TofuEvalConfig | None = None,
    progress: Progress | None = None,
) -> TofuEvaluation:
    """``evaluate_tofu`` of a guarded model that scores only the prompts its guard flags and takes every
    other row from ``bare``, the same model's unguarded evaluation on the same sets and settings: a prompt
    the guard passes reaches the model untouched, so its scores and generation are the bare model's (equal
    up to the float rounding of a different batch). On TOFU the guard flags the forget set and a few percent
    of the rest, so this skips most of the evaluation's work."""
    config = config or TofuEvalConfig()
    chat = bool(model.tokenizer.chat_template) if config.chat is None else config.chat
    settings = {**asdict(config), "chat": chat}
    if {k: v for k, v in bare.config.items() if k != "shared_prefix"} != {k: v for k, v in settings.items() if k != "shared_prefix"}:
        raise TofuDataError(f"the bare evaluation was made with {bare.config}, not {settings}: evaluate the guarded model in full")
    flagged_sets, decisions = {}, {}
    for split, items in eval_sets.items():
        rows = bare.items.get(split, [])
        if [r["question"] for r in rows] != [i.prompt for i in items]:
            raise TofuDataError(f"the bare evaluation's {split} questions are not these: evaluate the guarded model in full")
        decisions[split] = model.decide([i.prompt for i in items], chat=chat)
        flagged_sets[split] = [i for i, d in zip(items, decisions[split]) if d.flagged]
    scored = evaluate_tofu(model, {k: v for k, v in flagged_sets.items() if v}, name=name, config=config, progress=progress)
    items: dict[str, list[dict[str, Any]]] = {}
    for split in eval_sets:
        fresh = iter(scored.items.get(split, []))
        items[split] = [
            next(fresh) if d.flagged else {**row, "flagged": False, "targets": d.targets}
            for row, d in zip(bare.items[split], decisions[split])
        ]
    return TofuEvaluation(name, summarise(items, retain_truth_ratios), items, settings)
