"""What goes in the next release: ``fit_guard``'s and ``fit_classifier``'s setting keywords (now
``FitConfig`` fields) and reading report parts by string key (now attributes). Each use still works and
warns with what to write instead.
"""

from __future__ import annotations

import difflib
import json
import warnings
from typing import Any, Mapping, Sequence

from ..errors import InputError

__all__ = ["CLASSIFIER_KEYWORDS", "KEYWORDS", "KeyAccess", "apply_keywords"]

# old keyword -> the FitConfig field that replaces it, as FitConfig.updated spells it
KEYWORDS = {
    "name": "name", "seed": "seed", "chat": "chat", "alpha": "calibration__alpha",
    "test_fraction": "classifier__test_fraction", "search": "search__method", "budget": "search__budget",
    "strength": "search__strength", "strength_range": "search__strength_range", "objective": "search__objective",
    "objective_options": "search__objective_options", "corruption": "corruption__name",
    "corruption_params": "corruption__params", "tokens": "tokens__candidates",
}
CLASSIFIER_KEYWORDS = ("alpha", "test_fraction", "seed")
EMPTY = {"corruption_params": {}, "objective_options": {}, "tokens": ()}  # what the old None meant


class KeyAccess:
    """Reading a typed report part by its old string key (``report.held_out["fpr"]``), with a warning."""

    def __getitem__(self, key: str) -> Any:
        warnings.warn(
            f"reading {type(self).__name__} by key ({key!r}) is deprecated and goes in the next release; "
            f"read the attribute .{key} instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]  # type: ignore[attr-defined]


def apply_keywords(config: Any, keywords: Mapping[str, Any], caller: str,
                   allowed: Sequence[str] = tuple(KEYWORDS)) -> tuple[Any, dict[str, Any]]:
    """``config`` (a ``FitConfig``) with old setting ``keywords`` applied, each warned about.

    Returns the config and the objective options a config cannot hold (Python objects such as
    ``reference_items``), which the caller passes to the objective of this fit only.
    """
    changes: dict[str, Any] = {}
    unstored: dict[str, Any] = {}
    for key, value in keywords.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"{caller}() got an unknown keyword argument {key!r}{hint}; settings go in config=FitConfig(...)")
        path = KEYWORDS[key]
        warnings.warn(
            f"{caller}({key}=...) is deprecated and goes in the next release; set FitConfig."
            f"{path.replace('__', '.')} and pass config=FitConfig(...)",
            DeprecationWarning,
            stacklevel=3,
        )
        value = EMPTY.get(key, value) if value is None else value
        if key == "objective_options":
            value = dict(value)
            if "target" in value:
                changes["search__target"] = value.pop("target")
            if "chat" in value:
                changes["chat"] = value.pop("chat")
            unstored = {k: v for k, v in value.items() if not _is_json(v)}
            value = {k: v for k, v in value.items() if k not in unstored}
        changes[path] = value
    return (config.updated(**changes) if changes else config), unstored


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
