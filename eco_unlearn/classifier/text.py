"""Phrase matching shared by the keyword classifier and entity token selection, so both agree."""

from __future__ import annotations

import re

from typing import Sequence

__all__ = ["as_phrases", "phrase_regex"]


def as_phrases(value: str | Sequence[str]) -> tuple[str, ...]:
    """A single string is one phrase, not a sequence of letters; any other sequence is taken as is."""
    return (value,) if isinstance(value, str) else tuple(value)


def phrase_regex(phrase: str) -> str:
    """Regex for ``phrase`` as a whole word or words: "Muggle" matches "Muggle's" but not "smuggled"."""
    return rf"(?<!\w){re.escape(phrase.strip())}(?!\w)"
