"""fit_guard: from examples of what to forget to a tested guard, offline.

The pipeline: deduplicate the prompts and refuse forget prompts that are also retain prompts; split
them so that no prompt used for evaluation is seen in training or calibration; train the classifier;
calibrate its threshold with split conformal prediction on held-out negatives; report held-out error
rates; search the corruption strength against the objective on the forget items (every prompt
corrupted, so the strength is measured apart from classifier errors); then measure the objective end
to end, classifier included, and return the guard with its report.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .. import __version__
from ..classifier import ConstantClassifier, PromptClassifier
from ..data.items import ItemsError, PromptItem
from ..models import embedding_scale, fingerprint
from ..runtime.corruption import HIDDEN_SIZE, CorruptionSpec, get_corruption
from ..runtime.guard import Guard, Target
from ..runtime.guarded import GuardedModel
from ..runtime.tokens import TokenSelection
from .classifier_fit import ItemSource, Progress, fit_classifier
from .objectives import Objective, make_objective
from .search import SEARCHES, SearchError, SearchResult

__all__ = ["FitReport", "FitResult", "corrupt_every_prompt", "default_strength_range", "fit_guard"]


@dataclass
class FitReport:
    """What ``fit_guard`` measured, serialisable to JSON (it is also stored in the guard's metadata)."""

    target: str
    classifier: dict[str, Any]
    splits: dict[str, int]
    calibration: dict[str, Any]
    held_out: dict[str, Any]
    objective: dict[str, Any]
    search: dict[str, Any]
    strength: float
    corruption: dict[str, Any]
    met: bool
    seconds: dict[str, float]
    eco_unlearn_version: str = __version__
    warnings: list[str] = field(default_factory=list)
    token_candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    guard: Guard
    report: FitReport


def corrupt_every_prompt(
    model: Any, tokenizer: Any, corruption: CorruptionSpec, tokens: TokenSelection, *, seed: int = 0,
    model_fingerprint: Any = None,
) -> GuardedModel:
    """``model`` guarded so that every prompt is flagged and corrupted: how the strength search measures a
    corruption apart from classifier errors."""
    target = Target("every-prompt", ConstantClassifier(1.0), corruption, 0.5, tokens)
    return GuardedModel(model, tokenizer, Guard([target], model_fingerprint=model_fingerprint or fingerprint(model), seed=seed))


def default_strength_range(corruption: str, model: Any) -> tuple[float, float, bool]:
    """Search bounds ``(low, high, integer)`` for a corruption on ``model``.

    Noise is searched from 1/30 to 30 times the model's embedding scale; dimension counts from 1 to the
    hidden size; interpolation weights from 0.01 to their maximum.
    """
    low, high = get_corruption(corruption).strength_range
    if high == HIDDEN_SIZE:
        return 1.0, float(model.get_input_embeddings().weight.shape[-1]), True
    if math.isinf(high):
        scale = embedding_scale(model)
        return max(low, scale / 30), scale * 30, False
    return max(low, high / 100), float(high), False


def _choose_objective(items: Sequence[PromptItem]) -> str:
    if any(i.choices for i in items):
        return "choice_accuracy"
    if any(i.answer for i in items):
        return "answer_recall"
    raise ItemsError(
        "the strength search needs an objective, and the forget items have neither reference answers nor "
        "choices; add them, or give a fixed strength"
    )


def fit_guard(
    model: Any,
    tokenizer: Any,
    forget: ItemSource,
    retain: ItemSource = (),
    *,
    general: ItemSource | None = "builtin",
    name: str = "forget",
    entities: str | Sequence[str] = (),
    classifier: PromptClassifier | None = None,
    alpha: float = 0.01,
    objective: str | Objective | None = None,
    objective_options: dict[str, Any] | None = None,
    corruption: str = "gaussian_first_n",
    corruption_params: dict[str, Any] | None = None,
    tokens: TokenSelection | Sequence[TokenSelection] | None = None,
    strength: float | None = None,
    search: str = "auto",
    budget: int = 30,
    strength_range: tuple[float, float] | None = None,
    test_fraction: float = 0.25,
    chat: bool | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> FitResult:
    """Fit a guard for ``model`` that forgets what ``forget`` asks about and leaves the rest alone.

    ``forget`` and ``retain`` are files (JSON Lines or plain text) or lists of items; ``general`` adds
    everyday prompts as negatives (``"builtin"``: the bundled pool; None: none). ``entities`` (names,
    places, titles of the forget scope) become exact-match keywords next to the learned classifier and
    the tokens to corrupt. ``classifier`` is an unfitted classifier with a ``fit(forget, retain,
    extra_negatives=)`` method (default: a linear MiniLM classifier, with the entities' keywords).
    ``objective`` is a registered name (default: ``choice_accuracy`` when the forget items have choices,
    else ``answer_recall``) or an ``Objective``; ``search`` is ``bisection``, ``zeroth_order``, ``grid``
    or ``auto`` (bisection for monotone objectives); a fixed ``strength`` skips the search. ``tokens``
    may list selections in order of preference: each is searched in turn (``budget`` evaluations each) until one meets the target,
    else the one with the best value is kept (e.g. entities, then all-but-last when corrupting the
    entities alone cannot reach the target). An unreachable target keeps the best strength found and
    marks the guard ``met_target: false``.
    Returns the guard and its report; nothing is written to disk.
    """
    clock = {"start": time.perf_counter()}
    note = progress or (lambda what, done, total: None)
    warnings_: list[str] = []
    fitted = fit_classifier(
        forget, retain, general=general, entities=entities, classifier=classifier, alpha=alpha,
        test_fraction=test_fraction, seed=seed, progress=progress,
    )
    classifier, threshold, positives = fitted.classifier, fitted.threshold, fitted.positives
    calibration, held_out, splits = fitted.calibration, fitted.held_out, fitted.splits
    entities = fitted.entities
    clock["calibration"] = time.perf_counter()

    # --------------------------------------------------------------------------- strength search
    if isinstance(tokens, TokenSelection):
        candidates = [tokens]
    else:
        candidates = list(tokens or ()) or [TokenSelection("entities", entities=entities) if entities else TokenSelection()]
    params = dict(corruption_params or {})
    CorruptionSpec(corruption, 0.0, params).validate()
    bare = GuardedModel(model, tokenizer)
    obj = objective if isinstance(objective, Objective) else make_objective(
        objective or _choose_objective(positives), positives, **{"chat": chat, **(objective_options or {})}
    )
    note(f"objective {obj.name}: preparing", 0, 1)
    obj.prepare(bare)
    model_fp = fingerprint(model)

    def search_with(selection: TokenSelection) -> SearchResult:
        def evaluate(value: float) -> float:
            spec = CorruptionSpec(corruption, value, params)
            return obj.evaluate(corrupt_every_prompt(model, tokenizer, spec, selection, seed=seed, model_fingerprint=model_fp))

        if strength is not None:
            CorruptionSpec(corruption, strength, params).validate(model_fp.hidden_size)
            value = evaluate(strength)
            return SearchResult("fixed", float(strength), value, obj.met(value), obj.goal, obj.target)
        low, high, integer = default_strength_range(corruption, model)
        if strength_range is not None:
            low, high = strength_range
        method = ("bisection" if obj.monotone else "zeroth_order") if search == "auto" else search
        if method not in SEARCHES:
            raise SearchError(f"unknown search {search!r}; choose auto, {', '.join(SEARCHES)}")
        return SEARCHES.get(method)(
            evaluate, low=low, high=high, goal=obj.goal, target=obj.target, budget=budget, integer=integer,
            progress=progress,
        )

    before = obj.baseline if obj.baseline is not None else obj.evaluate(bare)
    tried: list[dict[str, Any]] = []
    chosen: tuple[TokenSelection, SearchResult] | None = None
    for selection in candidates:
        found = search_with(selection)
        tried.append({
            "tokens": selection.to_dict(), "strength": found.strength, "value": found.value, "met": found.met,
            "evaluations": found.evaluations,
        })
        if found.met or chosen is None or obj.better(found.value, chosen[1].value):
            chosen = (selection, found)
        if found.met:
            break
    tokens, result = chosen
    if not result.met:
        warnings_.append(result.message or "the objective's target was not met")
    clock["search"] = time.perf_counter()

    # --------------------------------------------------------------------------- end-to-end check
    target = Target(name, classifier, CorruptionSpec(corruption, result.strength, params), threshold, tokens, calibration)
    guard = Guard([target], model_fingerprint=model_fp, seed=seed)
    note("end-to-end evaluation", 0, 1)
    end_to_end = obj.evaluate(GuardedModel(model, tokenizer, guard))
    flagged = sum(d.flagged for d in guard.decide([i.prompt for i in obj.items]))
    clock["end_to_end"] = time.perf_counter()
    report = FitReport(
        target=name,
        classifier={"kind": classifier.kind, "repr": repr(classifier)},
        splits=splits,
        calibration=calibration,
        held_out=held_out,
        objective={
            "name": obj.name, "goal": obj.goal, "target": obj.target, "items": len(obj.items),
            "before": before, "after": result.value, "after_end_to_end": end_to_end,
            "items_flagged_end_to_end": flagged, "met_end_to_end": obj.met(end_to_end),
        },
        search=result.to_dict(),
        strength=result.strength,
        corruption={"name": corruption, "params": params, "tokens": tokens.to_dict()},
        met=result.met,
        seconds={
            "classifier": clock["calibration"] - clock["start"],
            "search": clock["search"] - clock["calibration"],
            "end_to_end": clock["end_to_end"] - clock["search"],
            "total": clock["end_to_end"] - clock["start"],
        },
        warnings=warnings_,
        token_candidates=tried if len(candidates) > 1 else [],
    )
    guard.metadata = {"fit_report": report.to_dict(), "met_target": result.met}
    return FitResult(guard, report)
