"""Fit an ECO guard on TOFU from what a real user has: the forget and retain questions, general prompts
and the target model. The retain model is never consulted.

- Classifier: the forget authors' names as keywords next to a linear MiniLM classifier, trained on forget
  vs retain questions; the paraphrased forget questions are kept out and only used to measure recall.
- Tokens: the forget scope's entities (names, places, titles found in its questions and answers), with
  all-but-last as the fallback: for a flagged question that names none, and for the whole scope when
  corrupting the entities alone cannot reach the objective (the search then runs again on all-but-last and
  the better of the two is kept).
- Strength: ``match_reference`` on truth ratios against a surrogate of a model that never saw the forget
  authors: the target model itself on the holdout authors, whom it never saw. TOFU's holdout splits carry
  no paraphrased or perturbed answers, so the perturbed answers are built by swapping one fact of the
  answer for another of the same kind (``perturb_answers``), the swaps the target finds most plausible
  kept, as TOFU's hand-written ones are plausible; the answer itself stands in for the paraphrase.
- Strength range: from the embedding scale to 3000 times it. A small model fine-tuned to memorise its
  answers recalls much of an author from the answer itself; only noise that swamps the question's
  tokens brings its truth ratios to the level of a model that never saw the author.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ...fitting import FitConfig, FitResult, SearchConfig, TokensConfig, fit_guard
from ...data.items import PromptItem
from ...runtime.guarded import GuardedModel
from ...runtime.shared_prefix import score_shared
from ...models import embedding_scale, load_model
from ...precision import autocast
from ...fitting.objectives import MatchReference, ObjectiveError, make_objective
from ...data.perturb import perturb_answers
from ...runtime.tokens import TokenSelection
from ...validation import one_of
from .data import HOLDOUT_SPLITS, TofuSplits, entity_phrases

__all__ = [
    "EcoTofuConfig", "fit_tofu_guard", "format_items", "load_base", "strength_range", "surrogate_objective", "token_candidates",
    "tofu_fit_config",
]

Progress = Callable[[str, int, int], None]
FORGET_ANSWERS = ("tofu", "swapped")
REFERENCES = ("holdout", "base", "pooled")


def format_items(items: Sequence[PromptItem], chat: bool) -> list[PromptItem]:
    """Questions as the model sees them: unchanged for a chat template, else ``Question: ...\\nAnswer:``."""
    return list(items) if chat else [replace(i, prompt=f"Question: {i.prompt}\nAnswer:") for i in items]


def tofu_fit_config(**changes: Any) -> FitConfig:
    """TOFU's fit settings: ``match_reference`` up to a KS p-value of 0.9, found by a ``bracket`` search of a
    log-spaced grid over the range. The surrogate is neither monotone nor smooth: it wanders well below the
    target at weak strengths (descent from the middle of the range followed that noise away in one seed of
    three), meets it in a window, and falls again where the noise overshoots. The bracket's probes (the 4th
    of 8 points, the 6th, then the 5th or the 7th) reach the point the scan from the weakest up stops at in 3
    evaluations where the scan spends 6 or 7, and when none of them meets it scans the rest. The search's
    forward passes follow the fine-tuning loop's precision rule (``dtype="auto"``: bfloat16 autocast where
    the CPU computes it natively), so ECO's fit cost and the baselines' training cost are measured alike;
    ``changes`` as ``FitConfig.updated`` takes them."""
    config = FitConfig(search=SearchConfig(method="bracket", objective="match_reference", target=0.9, dtype="auto"))
    return config.updated(**changes) if changes else config


@dataclass
class EcoTofuConfig:
    """Settings of the guard fit. ``tokens``: ``entities`` (the forget scope's names, titles and places,
    all-but-last where a question names none) or any other token selection strategy, e.g. ``all_but_last``.
    ``statistic``: ``truth_ratio`` (holdout items without perturbed answers get ``perturbed`` fact swaps) or
    ``answer_prob``. ``fit``: the fit's own settings (``tofu_fit_config()``); ``fit_tofu_guard`` sets its
    name, chat and token candidates from the splits, and its strength range, when None, to
    ``(scale, 3000 * scale)`` for the model's embedding scale. ``holdout``: the holdout split whose
    authors (in no training split) the surrogate scores (None: the preset's, as many authors as it forgets).
    ``forget_answers``: the answers the forget side of the truth ratio scores, ``"tofu"`` (TOFU's hand-written
    paraphrase and perturbed answers) or ``"swapped"`` (the answer and ``perturbed`` fact swaps of it, built
    as the holdout side's are, so that both sides of the KS test measure the same statistic).
    ``reference``: the surrogate's picture of a model that never saw the forget authors: ``"holdout"`` (the
    target on the holdout authors), ``"base"`` (the model the target was fine-tuned from, on the forget
    questions with TOFU's answers) or ``"pooled"`` (both samples together). Each has a bias of its own: the
    holdout side asks about other authors, with fact swaps for perturbed answers, from the few authors of a
    split; the base model never learnt TOFU's answer style. Pooling puts the two on either side of a model
    that never saw the authors and doubles the sample the KS test reads."""

    tokens: str = "entities"
    statistic: str = "truth_ratio"
    perturbed: int = 5
    holdout: str | None = None
    forget_answers: str = "tofu"
    reference: str = "holdout"
    fit: FitConfig = field(default_factory=tofu_fit_config)

    def signature(self) -> dict[str, Any]:
        """These settings as a stored seed's signature holds them: ``forget_answers`` and ``reference`` only
        when not ``"tofu"`` and ``"holdout"``, the behaviour from before they were settings, so guards fitted
        then keep matching."""
        settings = asdict(self)
        for name, before in (("forget_answers", "tofu"), ("reference", "holdout")):
            if settings[name] == before:
                del settings[name]
        return settings

    def seeded(self, seed: int) -> "EcoTofuConfig":
        """These settings with the fit's seed (classifier split, fact swaps, noise) set to ``seed``."""
        return replace(self, fit=self.fit.updated(seed=seed))

    def __post_init__(self) -> None:
        if self.tokens != "entities":
            TokenSelection(self.tokens)  # an unknown strategy fails here, before any model work
        if self.statistic not in ("truth_ratio", "answer_prob"):
            raise ObjectiveError(f"statistic must be 'truth_ratio' or 'answer_prob', not {self.statistic!r}")
        if self.holdout is not None and self.holdout not in HOLDOUT_SPLITS:
            raise ObjectiveError(f"holdout must be one of {', '.join(HOLDOUT_SPLITS)} (or None: the preset's), not {self.holdout!r}")
        one_of(self.forget_answers, "forget_answers", FORGET_ANSWERS, error=ObjectiveError)
        one_of(self.reference, "reference", REFERENCES, error=ObjectiveError)
        if self.reference != "holdout" and (self.forget_answers != "tofu" or self.statistic != "truth_ratio"):
            raise ObjectiveError(f"reference {self.reference!r} scores the base model on TOFU's answers with truth ratios: "
                                 "use it with forget_answers='tofu' and statistic='truth_ratio'")
        if self.perturbed < 1:
            raise ObjectiveError(f"perturbed (answers per holdout question) must be at least 1, not {self.perturbed}")


def surrogate_objective(
    model: Any, tokenizer: Any, splits: TofuSplits, config: EcoTofuConfig, chat: bool, *, limit: int | None = None,
    base: Any = None,
) -> MatchReference:
    """The strength search's objective: KS p of the forget truth ratios (or answer probabilities) against
    the reference ``config.reference`` names: the target's own on the holdout authors (the holdout items given
    fact-swapped perturbed answers), ``base``'s (the model the target was fine-tuned from, same tokenizer) on
    the forget questions, or both. ``limit`` scores only the first forget and holdout questions (smoke runs);
    the facts swapped in still come from every holdout answer, so those questions get the perturbed answers
    a full run gives them."""
    if config.reference != "holdout" and base is None:
        raise ObjectiveError(f"reference {config.reference!r} scores the base model the target was fine-tuned from; pass base=")
    holdout = format_items(splits.holdout_items(config.holdout), chat)
    reference = holdout[:limit] if limit else holdout
    every = format_items(splits.forget, chat)
    forget = every[:limit] if limit else every
    target = GuardedModel(model, tokenizer)
    if config.statistic == "truth_ratio":
        rank = _plausibility(target, chat)
        if config.reference != "base":
            reference = perturb_answers(reference, config.perturbed, pool=holdout[len(reference):], rank=rank, seed=config.fit.seed)
        if config.forget_answers == "swapped":
            bare = [replace(i, paraphrased_answer=None, perturbed_answers=()) for i in every]
            forget = perturb_answers(bare[: len(forget)], config.perturbed, pool=bare[len(forget):], rank=rank, seed=config.fit.seed)
    options = dict(chat=chat, statistic=config.statistic, target=config.fit.search.target)
    if config.reference == "holdout":
        return make_objective("match_reference", forget, reference_items=reference, **options)
    scorer = make_objective("match_reference", forget, reference_values=[0.0], **options)
    values = scorer.statistics(GuardedModel(base, tokenizer), forget)
    if config.reference == "pooled":
        usable = [i for i in reference if scorer.usable(i)]  # a holdout answer with no fact to swap has no perturbed ones
        values = np.concatenate([scorer.statistics(target, usable), values])
    return make_objective("match_reference", forget, reference_values=values.tolist(), **options)


def load_base(config: EcoTofuConfig, model: str, cache: str | None = None) -> Any:
    """The model the target was fine-tuned from (``model``, as ``load_model`` reads it) when
    ``config.reference`` scores it, else None."""
    return load_model(model, cache=cache)[0] if config.reference != "holdout" else None


def token_candidates(splits: TofuSplits, config: EcoTofuConfig) -> list[TokenSelection]:
    """The token selections the search tries, in order of preference."""
    if config.tokens != "entities":
        return [TokenSelection(config.tokens)]
    entities = entity_phrases(splits.forget, splits.retain_train, splits.forget_authors)
    return [TokenSelection("entities", entities=entities, fallback="all_but_last"), TokenSelection("all_but_last")]


def strength_range(model: Any, config: EcoTofuConfig) -> tuple[float, float]:
    scale = embedding_scale(model)
    return config.fit.search.strength_range or (scale, 3000 * scale)


def fit_tofu_guard(
    model: Any,
    tokenizer: Any,
    splits: TofuSplits,
    config: EcoTofuConfig | None = None,
    *,
    chat: bool | None = None,
    limit: int | None = None,
    base: Any = None,
    progress: Progress | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """Fit a guard on ``splits`` for ``model`` (the target). Returns the fit and a dict with the entities
    used and the classifier's recall on the held-out paraphrased forget questions. ``limit``: the strength
    search scores only the first forget and holdout questions (smoke runs; the classifier still learns from all).
    ``base``: the model the target was fine-tuned from, which ``config.reference`` ``"base"`` and ``"pooled"`` score."""
    config = config or EcoTofuConfig()
    chat = bool(tokenizer.chat_template) if chat is None else chat
    with autocast(config.fit.search.dtype, next(model.parameters()).device):  # the search's precision rule
        objective = surrogate_objective(model, tokenizer, splits, config, chat, limit=limit, base=base)
    settings = config.fit.updated(
        name=f"tofu-{splits.preset.forget}", chat=chat, tokens=TokensConfig(tuple(token_candidates(splits, config))),
        search__strength_range=strength_range(model, config),
    )
    fit = fit_guard(
        model, tokenizer, format_items(splits.forget, chat), format_items(splits.retain_train, chat), settings,
        entities=splits.forget_authors, objective=objective, progress=progress,
    )
    paraphrases = [i.prompt for i in format_items([PromptItem(q) for q in splits.forget_paraphrased_questions], chat)]
    caught = sum(d.flagged for d in fit.guard.decide(paraphrases)) if paraphrases else 0
    details = {
        "statistic": config.statistic,
        "surrogate_items": len(objective.reference_values),
        "classifier_entities": list(splits.forget_authors),
        "token_entities": entity_phrases(splits.forget, splits.retain_train, splits.forget_authors),
        "paraphrased_questions": len(paraphrases),
        "paraphrased_recall": caught / len(paraphrases) if paraphrases else None,
    }
    return fit, details


def _plausibility(model: GuardedModel, chat: bool) -> Callable[[list[tuple[str, str]]], list[float]]:
    """Mean token log-probability of each (prompt, answer) pair under ``model``: higher is more plausible.
    Consecutive pairs with one prompt (an answer's candidate swaps) share its prefill (``score_shared``)."""
    lead = "" if chat else " "

    def rank(pairs: list[tuple[str, str]]) -> list[float]:
        prompts: list[str] = []
        groups: list[list[str]] = []
        for prompt, answer in pairs:
            if not prompts or prompts[-1] != prompt:
                prompts.append(prompt)
                groups.append([])
            groups[-1].append(lead + answer)
        scored = score_shared(model, prompts, groups, chat=chat)
        return [float(lp.mean()) for group in scored for lp in group]

    return rank
