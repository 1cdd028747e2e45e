"""Phrase matching shared by the keyword classifier and entity token selection, so both agree."""

from __future__ import annotations

import re

__all__ = ["phrase_regex"]


def phrase_regex(phrase: str) -> str:
    """Regex for ``phrase`` as a whole word or words: "Muggle" matches "Muggle's" but not "smuggled"."""
    return rf"(?<!\w){re.escape(phrase.strip())}(?!\w)"
