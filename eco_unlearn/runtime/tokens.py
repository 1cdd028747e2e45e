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

__all__ = ["ENTITY_STRATEGIES", "SELECTION_STRATEGIES", "TokenSelection", "surname_spans", "user_token_indices"]

Offsets = Sequence[tuple[int, int]]
Strategy = Callable[[list[int], RenderedPrompt, Offsets, "TokenSelection"], list[int]]


SELECTION_STRATEGIES: Registry[Strategy] = Registry("token selection", error=GuardError)


@SELECTION_STRATEGIES.register("all")
def _all(candidates: list[int], prompt: RenderedPrompt, offsets: Offsets, selection: "TokenSelection") -> list[int]:
    return candidates


@SELECTION_STRATEGIES.register("all_but_last")
def _all_but_last(candidates, prompt, offsets, selection):
    return candidates[:-1] or candidates  # a one-token user text is corrupted whole, never left in the clear


def _entity_spans(prompt: RenderedPrompt, selection: "TokenSelection", people: bool) -> list[tuple[int, int]]:
    spans = []
    for start, end in prompt.user_spans:
        segment = prompt.text[start:end]
        for pattern in selection.patterns():
            spans.extend((start + m.start(), start + m.end()) for m in pattern.finditer(segment))
        if people:
            spans.extend((start + a, start + b) for a, b in surname_spans(segment, selection.entities))
    return spans


def _select_spans(candidates, prompt, offsets, selection, spans):
    chosen = [i for i in candidates if any(offsets[i][0] < b and offsets[i][1] > a for a, b in spans)]
    if chosen or selection.fallback is None:
        return chosen
    return SELECTION_STRATEGIES.get(selection.fallback)(candidates, prompt, offsets, selection)


@SELECTION_STRATEGIES.register("entities")
def _entities(candidates, prompt, offsets, selection):
    return _select_spans(candidates, prompt, offsets, selection, _entity_spans(prompt, selection, False))


@SELECTION_STRATEGIES.register("people")
def _people(candidates, prompt, offsets, selection):
    """The entities (people's names), and each name's surname where it stands alone (``surname_spans``)."""
    return _select_spans(candidates, prompt, offsets, selection, _entity_spans(prompt, selection, True))


ENTITY_STRATEGIES = ("entities", "people")
"""The strategies that read ``TokenSelection.entities``."""

_CAPITALISED_RUN = re.compile(r"(?:[A-Z][\w.'’-]*\s+)+$")
_NOT_NAMES = frozenset(
    "the a an in on at when what where who whom whose why how which did does do is was were are has had have can "
    "could would will should after before during while since as and but or if for from with by to of about tell "
    "please question answer sure here then later like unlike both so because although though yes no i my me we "
    "our you your mr mrs ms dr sir".split()
)


def surname_spans(text: str, names: Sequence[str]) -> list[tuple[int, int]]:
    """Where the surname of one of ``names`` (its last word, capitalised, four letters or more) stands for
    the person: spelled with its capital, not followed by another capitalised word, and either not after
    capitalised words or after ones that start like the person's first name ("Rhea Jo Perlman" for Rhea
    Perlman, "Robert Kelly" for R. Kelly; the span then covers those words too). So "Buffett founded" and "Jenner's daughters" match, "Kendall
    Jenner", "Jason Kelce" and "Kelly Clarkson" do not."""
    spans = []
    for name in names:
        words = name.split()
        if len(words) < 2 or len(words[-1]) < 4 or not words[-1][0].isupper():
            continue
        first = words[0].rstrip(".").lower()
        for m in re.finditer(rf"(?<!\w){re.escape(words[-1])}(?!\w)", text):
            if re.match(r"\s+[A-Z]", text[m.end():]):
                continue  # a first name, or part of a longer name
            run = _CAPITALISED_RUN.search(text[: m.start()])
            before = list(re.finditer(r"\S+", run.group(0))) if run else []
            while before and before[0].group(0).rstrip(".").lower() in _NOT_NAMES:
                before.pop(0)
            if not before:
                spans.append((m.start(), m.end()))
                continue
            word = before[0].group(0).rstrip(".").lower()
            if word.startswith(first) or first.startswith(word):
                spans.append((run.start() + before[0].start(), m.end()))  # the whole name: "Rhea Jo Perlman"
    return spans


@dataclass(frozen=True)
class TokenSelection:
    """How to choose the prompt tokens to corrupt.

    ``strategy``: ``all_but_last`` (every user token but the last, as in the ECO paper; the only token
    of a one-token text; the default),
    ``all``, ``entities`` (tokens overlapping any of ``entities``; if none occurs, ``fallback``
    is used, or nothing is corrupted when ``fallback`` is None), or ``people`` (as ``entities``, which are
    people's names, and also a name's surname where it stands alone: ``surname_spans``).
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
        if self.fallback in ENTITY_STRATEGIES:
            raise GuardError(f"the fallback of a token selection cannot itself be {self.fallback!r}")
        if self.strategy in ENTITY_STRATEGIES and not any(e.strip() for e in self.entities):
            raise GuardError(f"token selection {self.strategy!r} needs at least one non-empty entity string")
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
