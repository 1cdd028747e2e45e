"""Fail-closed classification and planning: the server never answers a prompt unguarded because the
guard could not judge it.

A prompt whose classifier raises (or scores NaN or infinity) gets a ``FAIL_CLOSED_TARGET`` decision: every
user token corrupted with the guard's strongest corruption. A flagged prompt whose token selection picks no
token gets ``NO_TOKEN_TARGET`` added: every user token corrupted with its own targets' corruption. The
server then refuses such a prompt or answers it corrupted (``ServeConfig.on_classifier_error``). Both are
plain ``GuardDecision`` values that carry their selections, so ``GuardedModel.plan`` applies them as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from ..errors import ClassifierError
from ..runtime.guard import Guard, GuardDecision, strongest_corruptions
from ..runtime.guarded import GuardedModel
from ..runtime.plan import EncodedPrompt, Plan
from ..runtime.tokens import TokenSelection

__all__ = [
    "EVERY_USER_TOKEN", "FAIL_CLOSED_TARGET", "NO_TOKEN_TARGET", "Classified", "classify", "decide_finite",
    "plan_failing_closed",
]

FAIL_CLOSED_TARGET = "classifier-error"  # the classifier failed: every user token, the strongest corruption
NO_TOKEN_TARGET = "no-token-selected"  # flagged, but the selection picked nothing: every user token
EVERY_USER_TOKEN = TokenSelection("all")  # what both fail-closed targets select


@dataclass
class Classified:
    """Decisions for a batch of user texts, the classifier's error for each text where it raised, and
    (after ``plan_failing_closed``) why a flagged text's token selection could not be used."""

    decisions: list[GuardDecision]
    errors: list[str | None]
    selection_errors: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.selection_errors = self.selection_errors or [None] * len(self.decisions)

    @property
    def failed(self) -> bool:
        """Whether the classifier failed on any text."""
        return any(e is not None for e in self.errors)

    def failures(self) -> list[dict[str, str]]:
        """Per text, the audit fields saying why it fails closed (empty where it does not)."""
        return [{**({"classifier_error": e} if e else {}), **({"selection_error": s} if s else {})}
                for e, s in zip(self.errors, self.selection_errors)]

    @property
    def fails_closed(self) -> bool:
        """Whether any text must be refused or answered with every user token corrupted."""
        return any(self.failures())


def _fail_closed(guard: Guard) -> GuardDecision:
    return GuardDecision(True, [FAIL_CLOSED_TARGET], {}, corruptions=strongest_corruptions(guard.targets),
                         selections=[EVERY_USER_TOKEN])


def decide_finite(guard: Guard, texts: list[str]) -> list[GuardDecision]:
    """``guard.decide(texts)``, raising when a score is not a number: NaN never reaches a threshold, so
    a classifier that fails that way would otherwise pass every text as unflagged."""
    decisions = guard.decide(texts)
    for decision in decisions:
        bad = sorted(name for name, score in decision.scores.items() if not math.isfinite(score))
        if bad:
            raise ClassifierError(f"non-finite score from target(s) {', '.join(bad)}")
    return decisions


def classify(guard: Guard | None, texts: Sequence[str]) -> Classified:
    """``guard.decide(texts)``, failing closed: if the classifiers raise (or score NaN), each text is
    classified alone and those that still fail get a ``FAIL_CLOSED_TARGET`` decision (every user token
    corrupted)."""
    texts = list(texts)
    if guard is None:
        return Classified([GuardDecision(False, [], {}) for _ in texts], [None] * len(texts))
    try:
        return Classified(decide_finite(guard, texts), [None] * len(texts))
    except Exception:  # any classifier failure; retried per text below
        pass
    decisions, errors = [], []
    for text in texts:
        try:
            decisions.extend(decide_finite(guard, [text]))
            errors.append(None)
        except Exception as exc:  # a user-registered classifier may raise anything
            decisions.append(_fail_closed(guard))
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
    return Classified(decisions, errors)


def plan_failing_closed(guarded: GuardedModel, guard: Guard | None, prompts: Sequence[EncodedPrompt],
                        reserves: Sequence[int], classified: Classified) -> tuple[Plan, Classified]:
    """Plan ``prompts`` (already tokenized) with the classification's decisions and ``guard``'s seed,
    keeping ``reserves`` new tokens per prompt, and fail closed on flagged prompts whose token selection
    picks no token (an ``entities`` selection without fallback whose entities do not occur, or tokens
    truncated away), which ``GuardedModel`` would answer uncorrupted: their decisions get
    ``NO_TOKEN_TARGET`` (every user token corrupted, with their targets' corruption) and a selection error.

    Returns the plan and the classification with the plan's decisions (corrupted-token counts filled in).
    """
    seed = guard.seed if guard is not None else 0
    plan = guarded.plan(prompts, reserve=reserves, decisions=classified.decisions, seed=seed, warn=False)
    decisions, selection_errors = plan.decisions, list(classified.selection_errors)
    empty = [i for i, row in enumerate(plan.rows) if row.decision.flagged and not any(row.mask)
             and FAIL_CLOSED_TARGET not in row.decision.targets]
    for i in empty:
        decision = decisions[i]
        decisions[i] = replace(decision, targets=[*decision.targets, NO_TOKEN_TARGET],
                               selections=[*decision.selections, EVERY_USER_TOKEN])
        selection_errors[i] = (f"flagged by {', '.join(decision.targets)}, but the token selection picked "
                               "no token of the user's text")
    if empty:  # planned again from the same tokens: nothing is tokenized twice
        plan = guarded.plan(prompts, reserve=reserves, decisions=decisions, seed=seed, warn=False)
    return plan, Classified(plan.decisions, list(classified.errors), selection_errors)
