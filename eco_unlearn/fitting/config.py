"""FitConfig: every setting of ``fit_guard``, declared once, validated on construction, stored in the guard.

The settings are grouped the way the fit runs: the classifier, its calibration, the token selections, the
corruption, and the strength search with its objective. Data and objects (the prompts, entity strings, a
classifier or ``Objective`` instance, a progress callback) are not settings: they stay arguments of
``fit_guard``. ``to_dict`` / ``from_dict`` round-trip a config through JSON; ``updated`` makes a
validated copy with some settings changed (nested ones as ``section__field``, as scikit-learn's
``set_params`` spells them).
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..classifier.encoder import MODES
from ..classifier.text import as_phrases
from ..errors import (
    CalibrationError, ClassifierError, CorruptionError, GuardError, InputError, ItemsError, ObjectiveError, SearchError,
)
from ..precision import DTYPES
from ..runtime.corruption import CorruptionSpec
from ..runtime.tokens import ENTITY_STRATEGIES, SELECTION_STRATEGIES, TokenSelection
from ..validation import integer, is_number, number, one_of
from .objectives import OBJECTIVES
from .search import SEARCHES

ENTITY_NEGATIVES = ("error", "drop", "forget", "accept")

__all__ = [
    "CalibrationConfig", "ClassifierConfig", "CorruptionConfig", "FitConfig", "SearchConfig", "TokenCandidate",
    "TokensConfig",
]

RESERVED_OPTIONS = {"target": "FitConfig.search.target", "chat": "FitConfig.chat"}


@dataclass
class ClassifierConfig:
    """The default classifier and the held-out split that measures it.

    * ``mode`` (``"linear"``): ``"linear"`` fits a logistic regression on a frozen encoder (seconds on a
      CPU, and enough for the demo and TOFU); ``"finetune"`` trains the encoder too.
    * ``backbone`` (``"minilm"``): the encoder, an embedded name (no download), a local folder or a hub id.
    * ``test_fraction`` (0.25): the share of forget prompts, and of the negatives left after calibration,
      held out to measure the error rates; a quarter leaves three quarters to train on.

    ``mode`` and ``backbone`` build the default classifier (a MiniLM classifier next to exact matches of
    the entities); they are unused when ``fit_guard`` is given a classifier.
    """

    mode: str = "linear"
    backbone: str = "minilm"
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ClassifierError(f"unknown classifier mode {self.mode!r}; choose {' or '.join(MODES)}")
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ClassifierError(f"backbone must be an embedded encoder name, a folder or a hub id, not {self.backbone!r}")
        number(self.test_fraction, "test_fraction", low=0, high=1, low_open=True, high_open=True, error=ItemsError)


@dataclass
class CalibrationConfig:
    """The classifier's threshold, calibrated by split conformal prediction on held-out negatives.

    * ``alpha`` (0.01): the bound on the chance that a prompt outside the forget scope is flagged. 1 % keeps
      everyday prompts untouched and needs 99 calibration negatives, which the built-in general pool has.
    * ``entity_negatives`` (``"error"``): negatives that name an entity of the scope score the maximum.
      ``"error"`` stops the fit, naming them, when they make the threshold unreachable; ``"drop"`` leaves
      them out; ``"forget"`` treats them as in scope (forget prompts); ``"accept"`` keeps them and flags at
      the maximum score, reporting the false-positive rate they cause.
    """

    alpha: float = 0.01
    entity_negatives: str = "error"

    def __post_init__(self) -> None:
        number(self.alpha, "alpha", low=0, high=1, low_open=True, high_open=True, error=CalibrationError)
        one_of(self.entity_negatives, "entity_negatives", ENTITY_NEGATIVES, error=CalibrationError)


@dataclass
class SearchConfig:
    """The corruption strength: searched against an objective on the forget items, or fixed.

    * ``method`` (``"auto"``): ``"bisection"`` (for objectives that improve with strength: the least
      corruption that meets the target, in a handful of evaluations), ``"zeroth_order"`` (no monotonicity
      needed), ``"scan"`` (a coarse scan from the weakest strength up, then a refinement: for rugged
      objectives over a wide range), ``"bracket"`` (the scan's grid bisected over its points first: for
      objectives that meet the target from some strength on, noisy below it), ``"grid"``; ``"auto"``
      bisects monotone objectives and descends the others.
    * ``budget`` (30): the most evaluations of the guarded model per token candidate (a grid's points);
      bisection usually needs fewer than 15, zeroth-order descent uses more.
    * ``strength`` (None): a fixed strength, measured once instead of searched.
    * ``strength_range`` (None): ``(low, high)`` searched; None: ``default_strength_range`` (noise from 1/30
      to 30 times the model's embedding scale, dimension counts from 1 to the hidden size).
    * ``objective`` (None): a registered objective; None: ``choice_accuracy`` when the forget items have
      choices, else ``answer_recall`` (what the data can measure).
    * ``target`` (None): the objective's target; None: the objective's own default.
    * ``objective_options`` ({}): further options of the objective, JSON values (e.g. ``{"metric":
      "rouge_l"}``); objects such as ``reference_items`` go in an ``Objective`` given to ``fit_guard``.
    * ``early_stop`` (True): ``bisection``, ``bracket`` and ``scan`` decide on met or missed alone, so an
      evaluation may stop as soon as the objective can tell its target is out of reach (``match_reference`` bounds its KS
      p-value from part of the items). The same strengths are chosen; the trace then holds bounds for the
      strengths that missed. False scores every item of every evaluation.
    * ``dtype`` (``"float32"``): the float type of the search's forward passes (the objective's reference,
      every evaluation, the end-to-end check). ``"auto"`` is bfloat16 autocast where the hardware computes
      it natively (two to three times faster on CPUs with AMX or AVX512-BF16; the rule fine-tuning follows),
      else float32; ``"bfloat16"`` always. Values then carry bfloat16 rounding (log-probabilities within a
      few hundredths), so the strength found may differ slightly from float32's; the guard itself runs in
      the model's own dtype.
    """

    method: str = "auto"
    budget: int = 30
    strength: float | None = None
    strength_range: tuple[float, float] | None = None
    objective: str | None = None
    target: float | None = None
    objective_options: dict[str, Any] = field(default_factory=dict)
    early_stop: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        one_of(self.dtype, "the search's dtype", DTYPES, error=SearchError)
        if not isinstance(self.early_stop, bool):
            raise SearchError(f"early_stop must be true or false, not {self.early_stop!r}")
        if self.method != "auto" and self.method not in SEARCHES:
            raise SearchError(f"unknown search {self.method!r}; choose auto, {', '.join(SEARCHES)}")
        integer(self.budget, "the evaluation budget", minimum=2, error=SearchError, what="an integer of at least 2")
        if self.strength is not None and not is_number(self.strength):
            raise SearchError(f"strength must be a finite number or None (search it), not {self.strength!r}")
        if self.strength_range is not None:
            bounds = tuple(self.strength_range) if isinstance(self.strength_range, (list, tuple)) else ()
            if len(bounds) != 2 or not all(is_number(b) for b in bounds) or not 0 < bounds[0] < bounds[1]:
                raise SearchError(f"the strength range must satisfy 0 < low < high < inf, got {self.strength_range!r}")
            self.strength_range = (float(bounds[0]), float(bounds[1]))
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ObjectiveError(f"unknown objective {self.objective!r}; known objectives: {', '.join(sorted(OBJECTIVES))}")
        if self.target is not None and not is_number(self.target):
            raise ObjectiveError(f"the objective's target must be a finite number or None (its default), not {self.target!r}")
        _check_options(self.objective_options)


def _check_options(options: Any) -> None:
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ObjectiveError(f"objective_options must be a mapping of option names to values, not {options!r}")
    for key, where in RESERVED_OPTIONS.items():
        if key in options:
            raise ObjectiveError(f"objective_options cannot hold {key!r}; set {where} instead")
    try:
        json.dumps(options, allow_nan=False)
    except (TypeError, ValueError):
        raise ObjectiveError(
            f"objective_options must be JSON values (numbers, strings, lists, mappings), not {options!r}; "
            "build an Objective (make_objective) and give it to fit_guard(objective=...) for other options"
        ) from None


@dataclass
class CorruptionConfig:
    """The corruption of flagged prompts' embeddings (its strength is the search's).

    * ``name`` (``"gaussian_first_n"``): a registered corruption; additive Gaussian noise (on every
      dimension unless ``n_dims`` says otherwise), whose strength is in the embeddings' own units.
    * ``params`` ({}): the corruption's parameters (e.g. ``{"n_dims": 64}``); {}: its defaults.
    """

    name: str = "gaussian_first_n"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.params, dict):
            raise CorruptionError(f"corruption 'params' must be an object, not {type(self.params).__name__}")
        CorruptionSpec(self.name, 0.0, self.params).validate()


@dataclass
class TokenCandidate:
    """One token selection to try (see ``TokenSelection``).

    * ``strategy`` (``"all_but_last"``): a registered token selection strategy.
    * ``entities`` (()): for ``"entities"``: the strings whose tokens are corrupted; (): the entities given
      to ``fit_guard``.
    * ``fallback`` (``"all_but_last"``): for ``"entities"``: the strategy for a prompt that names none of
      them (None: leave it uncorrupted).
    """

    strategy: str = "all_but_last"
    entities: tuple[str, ...] = ()
    fallback: str | None = "all_but_last"

    def __post_init__(self) -> None:
        self.entities = as_phrases(self.entities)
        for name in (self.strategy, self.fallback):
            if name is not None:
                SELECTION_STRATEGIES.get(name)  # an unknown name: GuardError with the known ones
        if self.fallback in ENTITY_STRATEGIES:
            raise GuardError(f"the fallback of a token selection cannot itself be {self.fallback!r}")
        if not all(isinstance(e, str) for e in self.entities):
            raise GuardError(f"token selection entities must be strings, not {self.entities!r}")

    @classmethod
    def of(cls, selection: TokenSelection) -> "TokenCandidate":
        return cls(selection.strategy, selection.entities, selection.fallback)

    def selection(self, entities: tuple[str, ...]) -> TokenSelection:
        """The ``TokenSelection`` this candidate means, given the fit's entities."""
        chosen = self.entities or (entities if self.strategy in ENTITY_STRATEGIES else ())
        return TokenSelection(self.strategy, chosen, self.fallback)


@dataclass
class TokensConfig:
    """Which prompt tokens are corrupted.

    * ``candidates`` (()): token selections in order of preference (``TokenCandidate``; a
      ``TokenSelection`` is converted). The strength is searched for each in turn, with the full budget,
      until one meets the target, else the one with the best value is kept: e.g. the entities, then
      ``all_but_last`` when corrupting the entities alone cannot reach the target. (): the entities'
      tokens when ``fit_guard`` gets entities (``all_but_last`` where a prompt names none), else
      ``all_but_last``, the ECO paper's choice.
    """

    candidates: tuple[TokenCandidate, ...] = ()

    def __post_init__(self) -> None:
        given = (self.candidates,) if isinstance(self.candidates, (TokenCandidate, TokenSelection)) else self.candidates
        if not isinstance(given, (list, tuple)):
            raise GuardError(f"tokens.candidates must be a list of token selections, not {self.candidates!r}")
        self.candidates = tuple(TokenCandidate.of(c) if isinstance(c, TokenSelection) else c for c in given)
        if not all(isinstance(c, TokenCandidate) for c in self.candidates):
            raise GuardError(f"tokens.candidates must hold TokenCandidate or TokenSelection objects, not {given!r}")

    def selections(self, entities: tuple[str, ...]) -> list[TokenSelection]:
        """The token selections to search, given the fit's entities."""
        if self.candidates:
            return [c.selection(entities) for c in self.candidates]
        return [TokenSelection("entities", entities=entities) if entities else TokenSelection()]


SECTIONS = {
    "classifier": ClassifierConfig, "calibration": CalibrationConfig, "search": SearchConfig,
    "corruption": CorruptionConfig, "tokens": TokensConfig,
}


@dataclass
class FitConfig:
    """Every setting of ``fit_guard``; ``guard.metadata["fit_config"]`` keeps it as ``to_dict()``.

    * ``name`` (``"forget"``): the target's name in the guard (what decisions and the audit log report).
    * ``seed`` (0): seeds the splits, the default classifier and the corruption noise: a fit is repeatable.
    * ``chat`` (None): whether the objective wraps prompts in the chat template; None: when the model has one.
    * ``classifier`` (``ClassifierConfig``): the default classifier and the held-out split.
    * ``calibration`` (``CalibrationConfig``): the false-positive bound of the threshold.
    * ``search`` (``SearchConfig``): the strength, its search and the objective it meets.
    * ``corruption`` (``CorruptionConfig``): what is done to the selected tokens' embeddings.
    * ``tokens`` (``TokensConfig``): which tokens, candidates in order of preference.
    """

    name: str = "forget"
    seed: int = 0
    chat: bool | None = None
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GuardError("a target needs a non-empty name")
        integer(self.seed, "seed", minimum=-(2**63), maximum=2**63 - 1, error=GuardError, what="a 64-bit signed integer")
        if self.chat is not None and not isinstance(self.chat, bool):
            raise ObjectiveError(f"chat must be True, False or None (when the model has a chat template), not {self.chat!r}")
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise InputError(
                    f"FitConfig.{name} must be a {kind.__name__}, not {type(getattr(self, name)).__name__} "
                    "(FitConfig.from_dict reads mappings)"
                )
        if self.search.strength is not None:
            CorruptionSpec(self.corruption.name, self.search.strength, self.corruption.params).validate()

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (tuples become lists)."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FitConfig":
        """A config from ``to_dict()`` output; an unknown or misspelled setting is refused by name."""
        values = _known(cls, data, "FitConfig")
        for name, kind in SECTIONS.items():
            if name in values:
                section = _known(kind, values[name], f"FitConfig.{name}")
                if kind is TokensConfig and isinstance(section.get("candidates"), list):
                    section["candidates"] = [
                        TokenCandidate(**_known(TokenCandidate, c, "FitConfig.tokens.candidates")) for c in section["candidates"]
                    ]
                values[name] = kind(**section)
        return cls(**values)

    def updated(self, **changes: Any) -> "FitConfig":
        """A validated copy with ``changes``: ``config.updated(seed=1, search__budget=10)``."""
        config = copy.deepcopy(self)
        for key, value in changes.items():
            config = _replace(config, key.split("__"), value, key)
        return config


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _known(cls: type, data: Any, where: str) -> dict[str, Any]:
    """``data`` as keyword arguments of ``cls``, refusing keys that are not its fields."""
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a mapping of settings, not {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            _unknown(str(key), key, names, where)
    return dict(data)


def _replace(config: Any, path: list[str], value: Any, key: str) -> Any:
    name, rest = path[0], path[1:]
    names = [f.name for f in fields(config)]
    if name not in names or (rest and not is_dataclass(getattr(config, name))):
        _unknown(name, key, names, type(config).__name__)
    if rest:
        value = _replace(getattr(config, name), rest, value, key)
    return replace(config, **{name: value})


def _unknown(name: str, key: Any, names: list[str], where: str) -> None:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(f"unknown setting {key!r} in {where}{hint} (known: {', '.join(names)})")
