"""Forget prompts that never name the person, from a text about them: what reverse queries and
"the star of 'Enter the Dragon'" paraphrases look like. Each sentence of the passage that is about the
person (names them, or starts with a pronoun) becomes a question for the person with every name removed,
so a classifier learns the person's topics, not only their name."""

from __future__ import annotations

import random
import re
from typing import Sequence

from .names import name_variants

__all__ = ["nameless_prompts", "passage_aliases"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PRONOUN = re.compile(r"^(?:He|She|They|His|Her|Their)\b")
FRAMES = (
    "Who is the person described here? {fact}",
    "{fact} Who am I talking about?",
    "Which person is this: {fact}",
    "Name the person: {fact}",
    "Tell me more about the one who fits this: {fact}",
)


_BIRTH_NAME = re.compile(r"^((?:[A-Z][\w.'-]*\s+){1,4}[A-Z][\w.'-]*)\s*\(")
_BORN_AS = re.compile(r"^[^(]{0,80}\(born ((?:[A-Z][\w'-]*\s+){1,3}[A-Z][\w'-]*)[;,)]")
_KNOWN_AS = re.compile(r"\b(?:known professionally as|better known as|known by (?:his|her|their) stage name)\s+"
                       r"((?:[A-Z0-9][\w.'-]*\s*){1,3})")


def passage_aliases(passage: str, name: str) -> tuple[str, ...]:
    """Other names of the person from the passage's opening: the full name before "(born ...", the name
    after "(born" and after "known professionally as" ("Curtis James Jackson III (born July 6, 1975), known
    professionally as 50 Cent, ..."). A passage of several texts (lines) is read at each line's opening too
    (a one-line intro before the encyclopaedia text), keeping there only names with ``name``'s last word and
    initial ("Robert Sylvester Kelly" for "R. Kelly", not "Susan Alice Buffett" for "Warren Buffett")."""
    lines = [" ".join(line.split()) for line in passage.strip().splitlines()]

    def same_person(alias: str) -> bool:
        a, n = alias.lower().split(), name.lower().split()
        return a[-1] == n[-1] and a[0][0] == n[0][0]

    found = []
    for i, line in enumerate(filter(None, lines)):
        first = line[:300]
        for m in (_BIRTH_NAME.match(first), _BORN_AS.match(first), _KNOWN_AS.search(first)):
            alias = " ".join(m.group(1).split()).strip(" ,.") if m else ""
            if alias and (i == 0 or same_person(alias)):
                found.append(alias)
    return tuple(dict.fromkeys(a for a in found if a.lower() != name.lower() and len(a.split()) <= 5))


def _name_pattern(names: Sequence[str]) -> re.Pattern[str]:
    words = {w for n in names for v in name_variants(n) for w in re.findall(r"\w+", v) if len(w) >= 3}
    phrases = sorted({v for n in names for v in name_variants(n)} | words, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, phrases)) + r")(?:'s)?(?!\w)", re.IGNORECASE)


def nameless_prompts(passage: str, names: Sequence[str], *, limit: int = 150, seed: int = 0) -> list[str]:
    """Up to ``limit`` questions for the person from ``passage``'s sentences about them, names removed."""
    pattern = _name_pattern(names)
    rng = random.Random(seed)
    out = []
    for sentence in _SENTENCE.split(passage):
        sentence = " ".join(sentence.split())
        if not 30 <= len(sentence) <= 300 or not (pattern.search(sentence) or _PRONOUN.match(sentence)):
            continue
        fact = " ".join(pattern.sub("this person", sentence).split())
        out.append(rng.choice(FRAMES).format(fact=fact))
        if len(out) >= limit:
            break
    return out
