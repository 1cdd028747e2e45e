"""Reverse queries: "Who founded Jeet Kune Do?" asks for the person without naming them. What gives it away
is a phrase only the person's texts use (a work, a company, a nickname) in a question that asks for a person.

``mine_signatures`` finds such phrases in the forget prompts a guard is fitted on: capitalised phrases and
quoted titles seen at least twice there and never among the negatives. ``SignatureIndex`` finds them in a
text in one pass over its words; ``asks_for_person`` tells whether a text asks who someone is."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["SignatureIndex", "asks_for_person", "mine_signatures", "phrases"]

_PHRASE = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:(?:of|the|and|da|de|for|in|or|to|a)\s+)?[A-Z0-9][\w'-]*)*")
_QUOTED = re.compile(r"(?<!\w)['\"‘“]([A-Z0-9][^'\"’”\n]{2,60})['\"’”](?!\w)")
_LEADING = re.compile(r"^(?:(?:about|according|after|at|before|between|born|by|during|from|in|on|since|to|with|"
                      r"the|a|an|and|but|or|as|if|when|while|did|does|was|is|what|who|which|where|how|why|complete|"
                      r"question|answer|please)\s+)+")
_WORD = re.compile(r"\w+")
_ROLES = ("person|artist|singer|actor|actress|author|writer|novelist|musician|rapper|host|presenter|star|"
          "entrepreneur|businessman|businesswoman|philosopher|thinker|leader|figure|celebrity|individual|man|woman|"
          "athlete|player|model|founder|creator|comedian|politician|statesman|emperor|ruler|icon|personality")
_ASKS = re.compile(
    rf"(?:^|[.?!:\n]\s*|\b(?:me|us|know|identify|guess|wonder|recall|confirm|name|about)\s+)(?:who|whose|whom)\b"
    rf"|\b(?:which|what) (?:\w+ )?(?:{_ROLES})\b|\bthe (?:\w+ )?(?:{_ROLES}) (?:of|behind|from|who|known)\b"
    rf"|\bname the (?:\w+ )?(?:{_ROLES})\b"
    r"|(?:^|[¿.?!:\n]\s*|\b(?:English|inglés|anglais|Englisch)[.:]\s*)(?:quién|quien|qui|wer|chi|quem)\b",
    re.IGNORECASE)
_BORING = frozenset("the a an in he she his her they it this that after during when what who which how where why is "
                    "was "
                    "american english please question answer complete blank".split())


def asks_for_person(text: str) -> bool:
    """Whether ``text`` asks for a person: who, whose, which singer, the author of, name the actor, and
    questions opening with who in Spanish, French, German, Italian or Portuguese."""
    return _ASKS.search(text) is not None


def phrases(text: str) -> set[str]:
    """Distinctive phrases of ``text``, lower-cased: capitalised phrases of two words or more ("Jeet Kune
    Do", "Standard Oil") and quoted titles of any length ('Machete'), of at least four letters."""
    quoted = {m.group(1).strip().lower() for m in _QUOTED.finditer(text)}
    capitalised = {_LEADING.sub("", m.group(0).strip().lower()) for m in _PHRASE.finditer(text)}
    found = quoted | {p for p in capitalised if len(_WORD.findall(p)) >= 2}
    return {p for p in found if len(p) >= 4 and not set(_WORD.findall(p)) <= _BORING}


def mine_signatures(positives: Iterable[str], negatives: Iterable[str], *, exclude: Sequence[str] = (),
                    min_count: int = 2) -> list[str]:
    """Phrases in ``min_count`` or more ``positives`` and in no ``negatives``; phrases with a word of
    ``exclude`` (the names, which are matched on their own) are left out."""
    counts = Counter(p for text in positives for p in phrases(text))
    background = {p for text in negatives for p in phrases(text)}
    names = {w.lower() for n in exclude for w in _WORD.findall(n)}
    return sorted(p for p, n in counts.items()
                  if n >= min_count and p not in background and not set(_WORD.findall(p)) & names)


class SignatureIndex:
    """Finds any of ``signatures`` (word sequences, case-insensitive) in a text, indexed by first word."""

    def __init__(self, signatures: Sequence[str]) -> None:
        self.signatures = list(signatures)
        self.by_first: dict[str, list[tuple[str, ...]]] = {}
        for s in self.signatures:
            words = tuple(_WORD.findall(s.lower()))
            if words:
                self.by_first.setdefault(words[0], []).append(words)

    def find(self, text: str) -> str | None:
        """The first signature in ``text``, or None."""
        words = _WORD.findall(text.lower())
        for i, w in enumerate(words):
            for phrase in self.by_first.get(w, ()):
                if tuple(words[i : i + len(phrase)]) == phrase:
                    return " ".join(phrase)
        return None
