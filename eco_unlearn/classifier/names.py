"""Indexed name matching for many people at once, with partial names read in context.

``NameIndex`` finds, in one pass over a text's words, every person whose name it holds: the full name
(each word within one edit for words of ``min_length`` letters or more, exactly for shorter ones, so
"Talyor Swift" matches and "Jonathan Swift" does not), initials with the surname ("T. Swift"), and
partial names, the surname alone or the first name alone. The cost does not grow with the number of
names: each text word is looked up in a hash index of the name words and of their one-letter deletions
(symmetric-deletion matching, checked with the optimal-string-alignment distance).

A partial name is ambiguous (relatives share surnames, many people share first names), so it is kept only
in the context that points to the person: a capitalised word (the surname as written by the person's
family is "Brandon Lee", not "Lee") or a blank ("___ Swift" asks for the first name of whoever it is) next
to it means someone else or a cloze, and the hit is dropped. What is left is reported as a ``partial`` hit,
for a classifier to weigh against the rest of the text, not as a match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import GuardError
from .fuzzy import osa_distance

__all__ = ["NameHit", "NameIndex", "name_variants"]

_TOKEN = re.compile(r"\w+|_{2,}")
# Capitalised words that start sentences or are titles, not first names of someone else.
NOT_NAMES = frozenset(
    "a an and as at but by did do does for from had has have he her his how i if in is it mr mrs ms dr sir "
    "of on or prof she so the their then they this was were what when where which who whom whose why will "
    "with would you your please tell about according question answer complete".split()
)


def name_variants(name: str) -> tuple[str, ...]:
    """``name`` and, for RWKU-style names with a title after a comma or in brackets ("Prince Harry, Duke of
    Sussex", "Paul Davis (singer)"), the part before it."""
    short = re.split(r"[,(]", name, maxsplit=1)[0].strip()
    return tuple(dict.fromkeys(n for n in (name.strip(), short) if n))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


@dataclass(frozen=True)
class NameHit:
    """``person`` (index into the names) found as ``kind``: ``full``, ``initials``, ``surname`` or ``first``."""

    person: int
    kind: str


class NameIndex:
    """Every name of ``names`` found in a text: one entry per person, a name or a sequence of spellings
    (the first is the name, whose first word and surname are the partial names); variants of each from
    ``name_variants``."""

    def __init__(self, names: Sequence[str | Sequence[str]], *, max_edits: int = 1, min_length: int = 5,
                 cache_size: int = 200_000) -> None:
        if max_edits not in (0, 1):
            raise GuardError(f"name matching allows 0 or 1 edits per word, not {max_edits}")
        self.spellings = [s for s in (tuple(n.strip() for n in ((e,) if isinstance(e, str) else e) if n.strip())
                                      for e in names) if s]
        if not self.spellings:
            raise GuardError("name matching needs at least one name")
        self.names = [s[0] for s in self.spellings]
        self.max_edits, self.min_length, self.cache_size = max_edits, min_length, cache_size
        # phrase id -> (person, words); the first words of every phrase index the phrases starting there
        self.phrases: list[tuple[int, tuple[str, ...]]] = []
        self.parts: dict[int, tuple[str, str]] = {}  # person -> (first name, surname), for multi-word names
        for person, name in enumerate(self.names):
            for variant in (v for spelling in self.spellings[person] for v in name_variants(spelling)):
                words = tuple(w.lower() for w in _TOKEN.findall(variant))
                if words:
                    self.phrases.append((person, words))
            short = [w.lower() for w in _TOKEN.findall(name_variants(name)[-1])]
            if short and short[0] in _TITLES:  # "Prince Harry": "Prince" alone is no one's first name
                short = short[1:] if len(short) >= 3 else []
            if len(short) >= 2 and len(short[-1]) >= 3:
                self.parts[person] = (short[0], short[-1])
        self.exact: dict[str, set[str]] = {}
        self.deleted: dict[str, set[str]] = {}
        for word in {w for _, words in self.phrases for w in words}:
            self.exact.setdefault(word, set()).add(word)
            if max_edits and len(word) >= min_length:
                for d in _deletions(word):
                    self.deleted.setdefault(d, set()).add(word)
        self.starts: dict[str, list[int]] = {}
        for pid, (_, words) in enumerate(self.phrases):
            self.starts.setdefault(words[0], []).append(pid)
        self.firsts: dict[str, list[int]] = {}
        self.surnames: dict[str, list[int]] = {}
        for person, (first, last) in self.parts.items():
            self.firsts.setdefault(first, []).append(person)
            self.surnames.setdefault(last, []).append(person)
        self._cache: dict[str, frozenset[str]] = {}

    def _close(self, word: str) -> frozenset[str]:
        """The name words ``word`` may stand for (itself, or within one edit)."""
        found = self._cache.get(word)
        if found is not None:
            return found
        out = set(self.exact.get(word, ()))
        if self.max_edits and len(word) >= self.min_length - 1:
            candidates = set(self.deleted.get(word, ()))
            for d in _deletions(word):
                candidates |= self.exact.get(d, set()) | self.deleted.get(d, set())
            out |= {c for c in candidates if len(c) >= self.min_length and osa_distance(word, c) <= self.max_edits}
        found = frozenset(out)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[word] = found
        return found

    @staticmethod
    def _phrase_end(phrase: tuple[str, ...], start: int, raw: list[str], close: list[frozenset[str]]) -> int | None:
        """Where ``phrase`` ends when it starts at token ``start``: its words in order, a one-letter word
        standing for any capitalised word with that initial ("John D. Rockefeller" for "John Davison
        Rockefeller"), and at most one middle name before the last word ("Taylor Alison Swift")."""

        def fits(k: int, j: int) -> bool:
            if j >= len(raw):
                return False
            if len(phrase[k]) == 1:
                return raw[j][:1].isupper() and raw[j][:1].lower() == phrase[k]
            return phrase[k] in close[j]

        j = start + 1
        for k in range(1, len(phrase)):
            if fits(k, j):
                j += 1
            elif k == len(phrase) - 1 and j < len(raw) and raw[j][:1].isupper() and fits(k, j + 1):
                j += 2
            else:
                return None
        return j

    def hits(self, text: str) -> list[NameHit]:
        """Every person named in ``text``, with how (see the module docstring); one hit per person and kind."""
        return self.scan(text)[0]

    def scan(self, text: str) -> tuple[list[NameHit], list[tuple[int, int, str]]]:
        """``hits(text)`` and where each is: ``(start, end, kind)`` character spans, in order."""
        tokens = list(_TOKEN.finditer(text))
        raw = [t.group(0) for t in tokens]
        words = [w.lower() for w in raw]
        close = [self._close(w) for w in words]
        found: dict[tuple[int, str], None] = {}
        covered: set[int] = set()
        spans: list[tuple[int, int, str]] = []
        for i, options in enumerate(close):
            for word in options:
                for pid in self.starts.get(word, ()):
                    person, phrase = self.phrases[pid]
                    end = self._phrase_end(phrase, i, raw, close)
                    if end is not None:
                        found[(person, "full")] = None
                        covered.update(range(i, end))
                        spans.append((tokens[i].start(), tokens[end - 1].end(), "full"))
        for i, options in enumerate(close):
            if i in covered or not raw[i][:1].isupper() or not options or _not_the_person(text, tokens, i, options):
                continue
            before = raw[i - 1] if i > 0 else ""
            after = raw[i + 1] if i + 1 < len(raw) else ""
            for word in options:
                kinds = []
                for person in self.surnames.get(word, ()):
                    if len(before) == 1 and before.isalpha():  # an initial: theirs, or someone else's
                        if before.lower() == self.parts[person][0][0]:
                            kinds.append((person, "initials"))
                    elif not _other_name(before):
                        kinds.append((person, "surname"))
                kinds += [(person, "first") for person in self.firsts.get(word, ()) if not _other_name(after)]
                for hit in kinds:
                    found[hit] = None
                    start = tokens[i - 1].start() if hit[1] == "initials" else tokens[i].start()
                    spans.append((start, tokens[i].end(), hit[1]))
        spans = sorted(set(spans))
        return [NameHit(p, k) for p, k in found], spans


_TITLES = frozenset("prince princess king queen duke duchess lord lady sir dame saint st pope emperor empress "
                    "president general captain dr mr mrs ms".split())
_QUOTES = "'\"‘’“”"
_GROUP_AFTER = frozenset({"family", "families", "dynasty", "brothers", "sisters", "foundation", "center", "centre",
                          "university", "institute", "street", "award", "prize", "show"})


def _not_the_person(text: str, tokens: list[re.Match[str]], i: int, options: frozenset[str]) -> bool:
    """Whether a partial name at token ``i`` stands for something else: a title in quotes ('Reba', the TV
    series), one of a duo ("Donny & Marie"), a family ("the Rockefellers", "the Rockefeller family") or a
    foundation, street or show named after the person."""
    start, end = tokens[i].start(), tokens[i].end()
    before, after = text[max(0, start - 2) : start].strip(), text[end : end + 2].strip()
    if before[-1:] in _QUOTES and after[:1] in _QUOTES:
        return True
    if before.endswith("&") or after.startswith("&"):
        return True
    word = tokens[i].group(0).lower()
    following = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else ""
    return following in _GROUP_AFTER or (word not in options and word[:-1] in options and word.endswith("s"))


def _other_name(word: str) -> bool:
    """Whether a word next to a partial name makes it someone else's name, or a blank to fill."""
    if word.startswith("__"):
        return True
    return len(word) > 1 and word[:1].isupper() and word.lower() not in NOT_NAMES
