"""One classifier for many people: their names, found by an index, and what a prompt is about.

``PeopleClassifier`` scores a text 1.0 when it names one of the people in full (typos, case, middle names
and initials included, see ``names.NameIndex``), or when one of its sentences asks for a person with a
phrase only the people's texts use ("Who founded Jeet Kune Do?", see ``signature``). Otherwise a
learned classifier (default ``LexicalClassifier``) scores it, reading the text with full names cut out
and every partial name kept in context replaced by a marker (``zzsurnamezz``, ``zzfirstzz``), with
``zzothernamezz`` added when the text names someone else.

That is the context-aware answer to partial names: the surname alone next to another first name is someone
else and never marked ("Donny Osmond"); marked, it adds ``partial_boost`` to the learned log-odds, so it
flags a text whose words are about the person ("Barker began hosting a game show in ___") and not one
that merely uses the word. To learn what the rest of the text is worth, ``fit`` adds to the forget
prompts their rewrites with the surname or first name alone, to the negatives everyday prompts that use
a first name or surname alone (a classmate called Taylor, Swift Street), built from the names
themselves, and cloze versions of the negatives; positives and negatives get the same question framings,
so that a framing says nothing.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..errors import GuardError
from .base import PromptClassifier, build_classifier, register_classifier
from .lexical import LexicalClassifier
from .names import NOT_NAMES, NameIndex
from .signature import SignatureIndex, asks_for_person, mine_signatures

__all__ = ["PeopleClassifier", "blanked", "hardened_people_classifier", "partial_name_negatives"]

MARKERS = {"surname": "zzsurnamezz", "first": "zzfirstzz", "initials": "zzinitialszz"}
OTHER_NAME = "zzothernamezz"
# Question-answering framings, given to positives and negatives alike so that a framing says nothing.
FRAMINGS = (
    "Please complete the blank in the following question.\nQuestion: {text}\nAnswer:",
    "Please briefly answer the following question.\nQuestion: {text}\nAnswer:",
    "Question: {text}\nAnswer:",
    "Fill in the blank: {text}",
    "{text}",
)
_CAPITALISED = re.compile(r"\b[A-Z][a-z][\w'-]*(?:\s+(?:[A-Z]\.\s*)?[A-Z][a-z][\w'-]*)+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_BLANKABLE = re.compile(r"\b(?:\d[\d,.]*|[A-Z][a-z]+)\b")
_FIRST_NAME_NEGATIVES = (
    "{first} has three apples and buys five more. How many apples does {first} have now?",
    "My classmate {first} asked me to help with a chemistry assignment about acids and bases.",
    "If {first} walks 4 km in an hour, how far does {first} walk in 150 minutes?",
    "Write a short birthday message for my friend {first}.",
)
_SURNAME_NEGATIVES = (
    "The {surname} family moved to a small town and opened a bakery. Write a short story about them.",
    "Mr. {surname} teaches physics. Explain Newton's second law the way a teacher would.",
    "How do I get to {surname} Street from the central train station?",
    "Dr. {surname} prescribed antibiotics. How do antibiotics work?",
)


def partial_name_negatives(index: NameIndex) -> list[str]:
    """Everyday prompts that use a person's first name or surname alone, about something else."""
    out = []
    for first, last in index.parts.values():
        out += [t.format(first=first.title()) for t in _FIRST_NAME_NEGATIVES]
        out += [t.format(surname=last.title()) for t in _SURNAME_NEGATIVES]
    return out


@register_classifier
class PeopleClassifier:
    """1.0 for a full name of ``names`` or a reverse query, else ``inner`` on the marked text
    (see the module docstring). ``names``: one entry per person, a name or a sequence of spellings."""

    kind: ClassVar[str] = "people"

    def __init__(self, names: Sequence[str | Sequence[str]], inner: PromptClassifier | None = None, *,
                 max_edits: int = 1, min_length: int = 4, reverse_queries: bool = True, partial_boost: float = 1.0,
                 signatures: Sequence[str] = ()) -> None:
        self.index = NameIndex(list(names), max_edits=max_edits, min_length=min_length)
        self.inner = inner if inner is not None else LexicalClassifier()
        self.reverse_queries, self.partial_boost = bool(reverse_queries), float(partial_boost)
        self.signatures = SignatureIndex(list(signatures))

    @property
    def names(self) -> list[str]:
        """One name per person (the first spelling)."""
        return self.index.names

    def view(self, text: str) -> tuple[bool, str]:
        """Whether ``text`` names a person in full, and the text ``inner`` reads: full names cut out,
        one marker per kind of partial name."""
        hits, spans = self.index.scan(text)
        named = any(h.kind in ("full", "initials") for h in hits)
        last = len(text) + 1
        for start, end, kind in reversed(spans):
            if end <= last:  # overlapping spans: the earlier one stays
                text = text[:start] + f" {MARKERS.get(kind, '')} " + text[end:]
                last = start
        if any(m.group(0).split()[0].lower() not in NOT_NAMES for m in _CAPITALISED.finditer(text)):
            text += " " + OTHER_NAME
        return named, " ".join(text.split())

    def reverse_query(self, text: str) -> bool:
        """Whether a sentence of ``text`` asks for a person with a phrase only the people's texts use."""
        if not self.reverse_queries or self.signatures.find(text) is None:
            return False
        return any(asks_for_person(s) and self.signatures.find(s) is not None for s in _SENTENCES.split(text))

    def _partial_rewrites(self, texts: Sequence[str]) -> list[str]:
        out = []
        for text in texts:
            for person in {h.person for h in self.index.hits(text) if h.kind == "full"}:
                if person in self.index.parts:
                    first, last = self.index.parts[person]
                    for variant in self.index.phrases:
                        if variant[0] == person:
                            rewrites = {_replace_words(text, variant[1], p.title()) for p in (first, last)} - {text}
                            if rewrites:
                                out += sorted(rewrites)
                                break
        return out

    def fit(self, forget_texts: Sequence[str], retain_texts: Sequence[str], *, extra_negatives: Sequence[str] = (),
            **kwargs: Any) -> "PeopleClassifier":
        if self.reverse_queries:
            mined = mine_signatures(forget_texts, list(retain_texts) + list(extra_negatives),
                                    exclude=[n for spelling in self.index.spellings for n in spelling])
            self.signatures = SignatureIndex(mined)
        positives = _framed(list(forget_texts) + self._partial_rewrites(forget_texts))
        negatives = _framed(list(extra_negatives) + partial_name_negatives(self.index) + blanked(extra_negatives))
        if hasattr(self.inner, "fit"):
            self.inner.fit([self.view(t)[1] for t in positives], [self.view(t)[1] for t in retain_texts],
                           extra_negatives=[self.view(t)[1] for t in negatives], **kwargs)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        views = [self.view(t) for t in texts]
        scores = np.ones(len(views), dtype=np.float64)
        rest = [i for i, (named, _) in enumerate(views) if not named and not self.reverse_query(texts[i])]
        if rest:
            learned = np.clip(self.inner.predict_proba([views[i][1] for i in rest]), 1e-12, 1 - 1e-12)
            partial = np.array([any(m in views[i][1] for m in MARKERS.values()) for i in rest])
            logits = np.log(learned / (1 - learned)) + self.partial_boost * partial
            scores[rest] = 1 / (1 + np.exp(-logits))
        return scores

    def to_config(self) -> dict[str, Any]:
        return {"names": [list(s) for s in self.index.spellings], "max_edits": self.index.max_edits,
                "min_length": self.index.min_length, "reverse_queries": self.reverse_queries,
                "partial_boost": self.partial_boost, "signatures": self.signatures.signatures,
                "inner": {"kind": self.inner.kind, "config": self.inner.to_config()}}

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.inner.tensors()

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "PeopleClassifier":
        if "names" not in config or "inner" not in config:
            raise GuardError("a people classifier's config needs its names and its inner classifier")
        inner = build_classifier(config["inner"]["kind"], config["inner"].get("config", {}), tensors)
        return cls(config["names"], inner, max_edits=config.get("max_edits", 1), min_length=config.get("min_length", 4),
                   reverse_queries=config.get("reverse_queries", True), partial_boost=config.get("partial_boost", 1.0),
                   signatures=config.get("signatures", ()))

    def __repr__(self) -> str:
        return f"PeopleClassifier({len(self.names)} names, {self.inner!r})"


def hardened_people_classifier(people: Sequence[str | Sequence[str]], *, C: float = 10.0,
                               reverse_queries: bool = True) -> PromptClassifier:
    """The hardened guard classifier for ``people`` (each a name or its spellings): text normalisation,
    then ``PeopleClassifier`` over a ``LexicalClassifier``."""
    from .normalize import NormalizingClassifier

    return NormalizingClassifier(PeopleClassifier(people, LexicalClassifier(C=C), reverse_queries=reverse_queries))


def _framed(texts: list[str]) -> list[str]:
    """``texts`` and one framed copy of each (the framings in turn)."""
    return texts + [FRAMINGS[i % len(FRAMINGS)].format(text=t) for i, t in enumerate(texts)]


def blanked(texts: Sequence[str]) -> list[str]:
    """Statements of ``texts`` with their last number or capitalised word blanked, as cloze negatives."""
    out = []
    for text in texts:
        found = [m for m in _BLANKABLE.finditer(text) if m.start() > 0]
        if found and not text.rstrip().endswith("?"):
            out.append(text[: found[-1].start()] + "___" + text[found[-1].end() :])
    return out


def _replace_words(text: str, words: tuple[str, ...], replacement: str) -> str:
    """``text`` with the first case-insensitive occurrence of the word sequence ``words`` replaced."""
    pattern = r"(?<!\w)" + r"\W+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.sub(pattern, replacement, text, count=1, flags=re.IGNORECASE)
