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
from typing import Any, Sequence

from ..classifier import ConstantClassifier, PromptClassifier
from ..data.items import ItemsError, PromptItem
from ..errors import ObjectiveError
from ..models import ModelFingerprint, embedding_scale, fingerprint
from ..precision import autocast
from ..runtime.corruption import HIDDEN_SIZE, CorruptionSpec, get_corruption
from ..runtime.guard import Guard, Target
from ..runtime.guarded import GuardedModel
from ..runtime.tokens import TokenSelection
from .classifier_fit import ItemSource, Progress, fit_classifier
from .config import FitConfig, SearchConfig
from .deprecated import apply_keywords
from .objectives import Objective, make_objective
from .report import ClassifierInfo, CorruptionChoice, FitReport, FitResult, FitSeconds, ObjectiveValues, TokenTrial
from .search import DECIDING, SEARCHES, OutOfReach, SearchResult
from .verdict import verdict

__all__ = [
    "FitReport", "FitResult", "corrupt_every_prompt", "default_strength_range", "every_prompt_guard", "fit_guard",
]


def every_prompt_guard(
    corruption: CorruptionSpec, tokens: TokenSelection, model_fingerprint: ModelFingerprint, *, seed: int = 0
) -> Guard:
    """A guard that flags and corrupts every prompt: how the strength search measures a corruption apart
    from classifier errors."""
    target = Target("every-prompt", ConstantClassifier(1.0), corruption, 0.5, tokens)
    return Guard([target], model_fingerprint=model_fingerprint, seed=seed)


def corrupt_every_prompt(
    model: Any, tokenizer: Any, corruption: CorruptionSpec, tokens: TokenSelection, *, seed: int = 0,
    model_fingerprint: Any = None,
) -> GuardedModel:
    """``model`` guarded by ``every_prompt_guard``, in a new ``GuardedModel``."""
    guard = every_prompt_guard(corruption, tokens, model_fingerprint or fingerprint(model), seed=seed)
    return GuardedModel(model, tokenizer, guard)


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


def _objective(
    search: SearchConfig, chat: bool | None, given: Objective | None, items: Sequence[PromptItem], unstored: dict[str, Any]
) -> Objective:
    """The objective given, checked against the config, or the one the config names, built on ``items``."""
    if given is None:
        options = {**search.objective_options, **unstored}
        if search.target is not None:
            options["target"] = search.target
        return make_objective(search.objective or _choose_objective(items), items, chat=chat, **options)
    if search.objective not in (None, given.name):
        raise ObjectiveError(
            f"FitConfig.search.objective is {search.objective!r} but the Objective given is {given.name!r}; set one of them"
        )
    if search.target not in (None, given.target):
        raise ObjectiveError(
            f"FitConfig.search.target is {search.target!r} but the Objective given has target {given.target!r}; set one of them"
        )
    if search.objective_options:
        raise ObjectiveError("an Objective given to fit_guard carries its own options; leave FitConfig.search.objective_options empty")
    return given


def fit_guard(
    model: Any,
    tokenizer: Any,
    forget: ItemSource,
    retain: ItemSource = (),
    config: FitConfig | None = None,
    *,
    general: ItemSource | None = "builtin",
    entities: str | Sequence[str] = (),
    classifier: PromptClassifier | None = None,
    objective: Objective | None = None,
    progress: Progress | None = None,
    **deprecated: Any,
) -> FitResult:
    """Fit a guard for ``model`` that forgets what ``forget`` asks about and leaves the rest alone.

    Every setting is a field of ``config`` (a ``FitConfig``; default: its defaults); the arguments are
    data. ``forget`` and ``retain`` are files (JSON Lines or plain text) or lists of items; ``general``
    adds everyday prompts as negatives (``"builtin"``: the bundled pool; None: none). ``entities`` (names,
    places, titles of the forget scope) become exact-match keywords next to the learned classifier and
    the tokens to corrupt. ``classifier`` is an unfitted classifier with a ``fit(forget, retain,
    extra_negatives=)`` method (default: from ``config.classifier``, with the entities' keywords).
    ``objective`` is an ``Objective`` built by the caller (default: the one ``config.search`` names).
    An unreachable target keeps the best strength found and marks the guard ``met_target: false``; so do an
    end-to-end value that misses the target and held-out rates on too few prompts (``fitting.verdict``).
    The guard's metadata holds the report (``fit_report``) and the config (``fit_config``).
    Returns the guard and its report; nothing is written to disk. The old setting keywords (``alpha=``,
    ``budget=``, ...) still work for one release, with a DeprecationWarning naming the field to set.
    """
    clock = {"start": time.perf_counter()}
    note = progress or (lambda what, done, total: None)
    if isinstance(objective, str):  # an objective's name is a setting: FitConfig.search.objective
        deprecated, objective = {**deprecated, "objective": objective}, None
    config, unstored_options = apply_keywords(config or FitConfig(), deprecated, "fit_guard")
    fitted = fit_classifier(
        forget, retain, config, general=general, entities=entities, classifier=classifier, progress=progress
    )
    warnings_: list[str] = list(fitted.notes)
    clock["calibration"] = time.perf_counter()

    # --------------------------------------------------------------------------- strength search
    search, name, seed = config.search, config.name, config.seed
    candidates = config.tokens.selections(fitted.entities)
    corruption, params = config.corruption.name, dict(config.corruption.params)
    guarded = GuardedModel(model, tokenizer)  # one for the whole fit: each evaluation attaches its guard
    obj = _objective(search, config.chat, objective, fitted.positives, unstored_options)
    note(f"objective {obj.name}: preparing", 0, 1)
    with autocast(search.dtype, guarded.device):
        obj.prepare(guarded)
    model_fp = guarded.model_fingerprint  # the embedding matrix is hashed once per fit

    method = ("bisection" if obj.monotone else "zeroth_order") if search.method == "auto" else search.method
    early = search.early_stop and obj.stops_early and method in DECIDING  # objectives that bound their value

    def measure(guard: Guard | None, *, exact: bool = False) -> float:
        guarded.attach(guard)
        with autocast(search.dtype, guarded.device):
            return obj.evaluate(guarded, stop_early=True) if early and not exact else obj.evaluate(guarded)

    def search_with(selection: TokenSelection) -> SearchResult:
        def evaluate(value: float, *, exact: bool = False) -> float:
            guard = every_prompt_guard(CorruptionSpec(corruption, value, params), selection, model_fp, seed=seed)
            return measure(guard, exact=exact)

        if search.strength is not None:
            CorruptionSpec(corruption, search.strength, params).validate(model_fp.hidden_size)
            value = evaluate(search.strength, exact=True)
            return SearchResult("fixed", float(search.strength), value, obj.met(value), obj.goal, obj.target)
        low, high, integer = default_strength_range(corruption, model)
        if search.strength_range is not None:
            low, high = search.strength_range
        return SEARCHES.get(method)(
            evaluate, low=low, high=high, goal=obj.goal, target=obj.target, budget=search.budget, integer=integer,
            progress=progress,
        )

    before = obj.baseline if obj.baseline is not None else measure(None)
    before_exact = not isinstance(before, OutOfReach)
    tried: list[TokenTrial] = []
    chosen: tuple[TokenSelection, SearchResult] | None = None
    for selection in candidates:
        found = search_with(selection)
        tried.append(TokenTrial.of(selection, found))
        if found.met or chosen is None or obj.better(found.value, chosen[1].value):
            chosen = (selection, found)
        if found.met:
            break
    tokens, result = chosen
    if not result.met:
        warnings_.append(result.message or "the objective's target was not met")
    clock["search"] = time.perf_counter()

    # --------------------------------------------------------------------------- end-to-end check
    spec = CorruptionSpec(corruption, result.strength, params)
    target = Target(name, fitted.classifier, spec, fitted.threshold, tokens, fitted.calibration.to_dict())
    guard = Guard([target], model_fingerprint=model_fp, seed=seed)
    note("end-to-end evaluation", 0, 1)
    guarded.attach(guard)
    flagged = sum(d.flagged for d in guard.decide([i.prompt for i in obj.items]))
    # a guard that flags every prompt the objective scores corrupts them exactly as the search did
    scored = obj.prompts()
    if scored is not None and all(d.flagged for d in guard.decide(scored)):
        end_to_end = result.value
    else:
        with autocast(search.dtype, guarded.device):
            end_to_end = obj.evaluate(guarded)
    clock["end_to_end"] = time.perf_counter()
    values = ObjectiveValues(
        name=obj.name, goal=obj.goal, target=obj.target, items=len(obj.items), before=float(before), after=result.value,
        after_end_to_end=end_to_end, items_flagged_end_to_end=flagged, met_end_to_end=obj.met(end_to_end),
        before_exact=before_exact,
    )
    met, reasons = verdict(result.met, values, fitted.held_out)
    warnings_ += reasons
    report = FitReport(
        target=name,
        classifier=ClassifierInfo(fitted.classifier.kind, repr(fitted.classifier)),
        splits=fitted.splits,
        calibration=fitted.calibration,
        held_out=fitted.held_out,
        objective=values,
        search=result,
        strength=result.strength,
        corruption=CorruptionChoice(corruption, params, tokens),
        met=met,
        seconds=FitSeconds(
            classifier=clock["calibration"] - clock["start"],
            search=clock["search"] - clock["calibration"],
            end_to_end=clock["end_to_end"] - clock["search"],
            total=clock["end_to_end"] - clock["start"],
        ),
        warnings=warnings_,
        token_candidates=tried if len(candidates) > 1 else [],
    )
    guard.metadata = {"fit_report": report.to_dict(), "met_target": met, "fit_config": config.to_dict()}
    return FitResult(guard, report)
