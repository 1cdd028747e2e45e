"""Fit an ECO guard on TOFU from what a real user has: the forget and retain questions, general prompts
and the target model. The retain model is never consulted.

- Classifier: the forget authors' names as keywords next to a linear MiniLM classifier, trained on forget
  vs retain questions; the paraphrased forget questions are kept out and only used to measure recall.
- Tokens: the forget scope's entities (names, places, titles found in its questions and answers), with
  all-but-last as the fallback: for a flagged question that names none, and for the whole scope when
  corrupting the entities alone cannot reach the objective (the search then runs again on all-but-last and
  the better of the two is kept).
- Strength: ``match_reference`` against a surrogate of a model that never saw the forget authors: the
  target model itself on the holdout authors, whom it never saw. TOFU's holdout splits carry no perturbed
  answers, so the statistic is the answer probability unless the holdout items have them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from ...fit import FitResult, fit_guard
from ...items import PromptItem
from ...objectives import make_objective
from ...tokens import TokenSelection
from .data import TofuSplits, entity_phrases

__all__ = ["EcoTofuConfig", "fit_tofu_guard", "format_items"]

Progress = Callable[[str, int, int], None]


def format_items(items: Sequence[PromptItem], chat: bool) -> list[PromptItem]:
    """Questions as the model sees them: unchanged for a chat template, else ``Question: ...\\nAnswer:``."""
    return list(items) if chat else [replace(i, prompt=f"Question: {i.prompt}\nAnswer:") for i in items]


@dataclass
class EcoTofuConfig:
    """Settings of the guard fit. ``tokens``: ``entities`` (the forget scope's names, titles and places,
    all-but-last where a question names none) or any other token selection strategy, e.g. ``all_but_last``.
    ``statistic``: ``auto`` (truth ratio when the holdout items have paraphrased and perturbed answers, else
    answer probability), ``truth_ratio`` or ``answer_prob``."""

    tokens: str = "entities"
    alpha: float = 0.01
    corruption: str = "gaussian_first_n"
    search: str = "zeroth_order"
    budget: int = 30
    target: float = 0.9
    statistic: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokens != "entities":
            TokenSelection(self.tokens)  # an unknown strategy fails here, before any model work


def fit_tofu_guard(
    model: Any,
    tokenizer: Any,
    splits: TofuSplits,
    config: EcoTofuConfig | None = None,
    *,
    chat: bool | None = None,
    progress: Progress | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """Fit a guard on ``splits`` for ``model`` (the target). Returns the fit and a dict with the entities
    used and the classifier's recall on the held-out paraphrased forget questions."""
    config = config or EcoTofuConfig()
    chat = bool(tokenizer.chat_template) if chat is None else chat
    forget = format_items(splits.forget, chat)
    holdout = format_items(splits.holdout, chat)
    statistic = config.statistic
    if statistic == "auto":
        statistic = "truth_ratio" if all(i.paraphrased_answer and i.perturbed_answers for i in holdout) else "answer_prob"
    entities = entity_phrases(splits.forget, splits.retain_train, splits.forget_authors)
    objective = make_objective(
        "match_reference", forget, chat=chat, statistic=statistic, reference_items=holdout, target=config.target
    )
    fit = fit_guard(
        model, tokenizer, forget, format_items(splits.retain_train, chat),
        name=f"tofu-{splits.preset.forget}",
        entities=splits.forget_authors,
        tokens=(
            [TokenSelection("entities", entities=entities, fallback="all_but_last"), TokenSelection("all_but_last")]
            if config.tokens == "entities" else TokenSelection(config.tokens)
        ),
        alpha=config.alpha,
        objective=objective,
        corruption=config.corruption,
        search=config.search,
        budget=config.budget,
        chat=chat,
        seed=config.seed,
        progress=progress,
    )
    paraphrases = [i.prompt for i in format_items([PromptItem(q) for q in splits.forget_paraphrased_questions], chat)]
    caught = sum(d.flagged for d in fit.guard.decide(paraphrases)) if paraphrases else 0
    details = {
        "statistic": statistic,
        "classifier_entities": list(splits.forget_authors),
        "token_entities": entities,
        "paraphrased_questions": len(paraphrases),
        "paraphrased_recall": caught / len(paraphrases) if paraphrases else None,
    }
    return fit, details
