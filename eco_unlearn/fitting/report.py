"""What a fit measured, typed: ``FitReport`` (with ``FitResult``, the guard and its report) and its parts.

``to_dict`` gives the JSON that ``eco-unlearn fit --report``, the guard's metadata and TOFU's report.json
hold; its keys are the same as when the report was a dict of dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..classifier.calibration import ErrorRates
from ..runtime.tokens import TokenSelection
from .deprecated import KeyAccess
from .search import SearchResult

if TYPE_CHECKING:
    from ..runtime.guard import Guard

__all__ = [
    "Calibration", "ClassifierInfo", "CorruptionChoice", "FitReport", "FitResult", "FitSeconds", "HeldOutRates",
    "ObjectiveValues", "Splits", "TokenTrial",
]


@dataclass
class HeldOutRates(KeyAccess, ErrorRates):
    """The classifier's error rates on held-out prompts, and its false-positive rate on the retain ones
    among them (None when no retain prompt was held out)."""

    fpr_retain: float | None = None
    retain_negatives: int = 0


@dataclass
class Calibration(KeyAccess):
    """The split-conformal threshold: at ``alpha``, from ``calibration_negatives`` held-out negatives
    (just above the ``quantile_rank``-th smallest score), with the error rates measured at it. Its
    ``to_dict`` is also stored in the guard (``Target.calibration``)."""

    alpha: float
    threshold: float
    calibration_negatives: int
    quantile_rank: int
    held_out: ErrorRates
    method: str = "split-conformal"

    def to_dict(self) -> dict[str, Any]:
        rates = self.held_out
        return {
            "method": self.method, "alpha": self.alpha, "threshold": self.threshold,
            "calibration_negatives": self.calibration_negatives, "quantile_rank": self.quantile_rank,
            "held_out_fpr": rates.fpr, "held_out_fnr": rates.fnr,
            "held_out_false_positives": rates.false_positives, "held_out_negatives": rates.negatives,
            "held_out_false_negatives": rates.false_negatives, "held_out_positives": rates.positives,
        }


@dataclass
class Splits(KeyAccess):
    """How many prompts each split of the fit holds (negatives: retain and general prompts)."""

    forget_train: int
    forget_test: int
    negative_train: int
    negative_calibration: int
    negative_test: int
    retain: int
    general: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClassifierInfo(KeyAccess):
    """The fitted classifier's kind and its ``repr``."""

    kind: str
    repr: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ObjectiveValues(KeyAccess):
    """The objective on the forget items: unguarded (``before``), every prompt corrupted at the chosen
    strength (``after``), and end to end with the classifier in front. ``before_exact`` is False when the
    unguarded evaluation stopped early, its target out of reach: ``before`` is then the bound it reached."""

    name: str
    goal: str
    target: float
    items: int
    before: float
    after: float
    after_end_to_end: float
    items_flagged_end_to_end: int
    met_end_to_end: bool
    before_exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CorruptionChoice(KeyAccess):
    """The corruption the guard applies, with the token selection the search kept."""

    name: str
    params: dict[str, Any]
    tokens: TokenSelection

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "tokens": self.tokens.to_dict()}


@dataclass
class TokenTrial(KeyAccess):
    """One token candidate's search: the strength it found, its value and whether it met the target."""

    tokens: TokenSelection
    strength: float
    value: float
    met: bool
    evaluations: int

    @classmethod
    def of(cls, tokens: TokenSelection, result: SearchResult) -> "TokenTrial":
        return cls(tokens, result.strength, result.value, result.met, result.evaluations)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens.to_dict(), "strength": self.strength, "value": self.value, "met": self.met,
                "evaluations": self.evaluations}


@dataclass
class FitSeconds(KeyAccess):
    """Wall-clock seconds of each stage of the fit."""

    classifier: float
    search: float
    end_to_end: float
    total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitReport:
    """What ``fit_guard`` measured; ``to_dict()`` is also stored in the guard's metadata.

    ``token_candidates`` lists each token selection searched, when there were several."""

    target: str
    classifier: ClassifierInfo
    splits: Splits
    calibration: Calibration
    held_out: HeldOutRates
    objective: ObjectiveValues
    search: SearchResult
    strength: float
    corruption: CorruptionChoice
    met: bool
    seconds: FitSeconds
    eco_unlearn_version: str = __version__
    warnings: list[str] = field(default_factory=list)
    token_candidates: list[TokenTrial] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.to_dict() if hasattr(value, "to_dict") else value


@dataclass
class FitResult:
    """The fitted guard and its report."""

    guard: Guard
    report: FitReport
