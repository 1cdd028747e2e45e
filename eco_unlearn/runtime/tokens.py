"""Which prompt tokens a corruption touches.

Strategies are a registry of functions that get the indices of the *user's* tokens (chat-template and
special tokens are already excluded) and return the subset to corrupt; add your own with
``@SELECTION_STRATEGIES.register("name")``. Entities are matched case-insensitively in the user's text
and mapped to tokens through the tokenizer's character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import GuardError
from ..registry import Registry
from .prompts import RenderedPrompt
from ..classifier.text import as_phrases, phrase_regex

__all__ = ["SELECTION_STRATEGIES", "TokenSelection", "user_token_indices"]

Offsets = Sequence[tuple[int, int]]
Strategy = Callable[[list[int], RenderedPrompt, Offsets, "TokenSelection"], list[int]]


SELECTION_STRATEGIES: Registry[Strategy] = Registry("token selection", error=GuardError)


@SELECTION_STRATEGIES.register("all")
def _all(candidates: list[int], prompt: RenderedPrompt, offsets: Offsets, selection: "TokenSelection") -> list[int]:
    return candidates


@SELECTION_STRATEGIES.register("all_but_last")
def _all_but_last(candidates, prompt, offsets, selection):
    return candidates[:-1] or candidates  # a one-token user text is corrupted whole, never left in the clear


@SELECTION_STRATEGIES.register("entities")
def _entities(candidates, prompt, offsets, selection):
    matches = []
    for start, end in prompt.user_spans:
        segment = prompt.text[start:end]
        for pattern in selection.patterns():
            matches.extend((start + m.start(), start + m.end()) for m in pattern.finditer(segment))
    chosen = [i for i in candidates if any(offsets[i][0] < b and offsets[i][1] > a for a, b in matches)]
    if chosen or selection.fallback is None:
        return chosen
    return SELECTION_STRATEGIES.get(selection.fallback)(candidates, prompt, offsets, selection)


@dataclass(frozen=True)
class TokenSelection:
    """How to choose the prompt tokens to corrupt.

    ``strategy``: ``all_but_last`` (every user token but the last, as in the ECO paper; the only token
    of a one-token text; the default),
    ``all``, or ``entities`` (tokens overlapping any of ``entities``; if none occurs, ``fallback``
    is used, or nothing is corrupted when ``fallback`` is None).
    """

    strategy: str = "all_but_last"
    entities: str | tuple[str, ...] = ()
    fallback: str | None = "all_but_last"
    _compiled: tuple[re.Pattern, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", as_phrases(self.entities))
        for name in (self.strategy, self.fallback):
            if name is not None:
                SELECTION_STRATEGIES.get(name)  # raises for an unknown name, listing the known ones
        if self.fallback == "entities":
            raise GuardError("the fallback of a token selection cannot itself be 'entities'")
        if self.strategy == "entities" and not any(e.strip() for e in self.entities):
            raise GuardError("token selection 'entities' needs at least one non-empty entity string")
        compiled = tuple(re.compile(phrase_regex(e), re.IGNORECASE) for e in self.entities if e.strip())
        object.__setattr__(self, "_compiled", compiled)

    def patterns(self) -> tuple[re.Pattern, ...]:
        return self._compiled

    def select(self, prompt: RenderedPrompt, offsets: Offsets, special: Sequence[bool]) -> list[int]:
        """Indices of the tokens to corrupt, given each token's character offsets and special flag."""
        candidates = user_token_indices(prompt, offsets, special)
        return SELECTION_STRATEGIES.get(self.strategy)(candidates, prompt, offsets, self)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "entities": list(self.entities), "fallback": self.fallback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenSelection":
        entities = data.get("entities", ())
        if not isinstance(entities, (list, tuple, str)):
            raise GuardError(f"token selection 'entities' must be a list of strings, not {type(entities).__name__}")
        return cls(data["strategy"], entities, data.get("fallback", "all_but_last"))


def user_token_indices(prompt: RenderedPrompt, offsets: Offsets, special: Sequence[bool]) -> list[int]:
    """Indices of non-special tokens that overlap the user's text."""
    return [
        i
        for i, (start, end) in enumerate(offsets)
        if not special[i] and end > start and any(start < b and end > a for a, b in prompt.user_spans)
    ]
