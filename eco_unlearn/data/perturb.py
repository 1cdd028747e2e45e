"""Perturbed answers built by swapping facts, for a truth ratio on items that have only an answer.

TOFU's truth ratio compares a true answer with perturbed ones: the same sentence with a fact changed.
Its perturbed answers were written by hand (by GPT-4) for the forget and retain authors only; a user's
own forget set, or TOFU's holdout authors, have none. ``perturb_answers`` builds them the same way
mechanically: each perturbed answer is the true one with one fact (a capitalised name or place, a
quoted title, a number or date) replaced by a fact of the same kind from another item. Facts the
question itself names are kept, since copying them from the question takes no knowledge.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Callable, Sequence

from ..errors import ItemsError
from .items import PromptItem

__all__ = ["FACT_PATTERNS", "fact_spans", "perturb_answers"]

_CONNECTORS = r"(?:al|el|de|del|van|von|der|bin|ibn|da|di|la|le|du|y|of|the)"
FACT_PATTERNS: dict[str, re.Pattern] = {
    "quoted": re.compile(r"[\"“]([^\"”]{2,200}?)[,.;:!?]?[\"”]"),
    "date": re.compile(
        r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        r"(?:\s+\d{1,2}(?:st|nd|rd|th)?)?,?\s+\d{4}\b|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:January|February|March|"
        r"April|May|June|July|August|September|October|November|December),?\s+\d{4}\b"
    ),
    "number": re.compile(r"\b\d[\d,.]*\b"),
    "name": re.compile(rf"\b[A-Z][\w\-]*(?:['’][A-Z][\w\-]*)?(?:\s+(?:{_CONNECTORS}\s+)*[A-Z][\w\-]*(?:['’][A-Z][\w\-]*)?)*"),
}
# A sentence's first word is capitalised whatever it is; these are not names when they lead.
_COMMON = {
    "A", "An", "The", "In", "On", "At", "As", "By", "For", "From", "With", "Of", "To", "And", "But", "Yes", "No",
    "His", "Her", "Their", "He", "She", "They", "It", "Its", "This", "That", "These", "Those", "While", "Although",
    "However", "Some", "One", "Many", "Both", "Author", "Born", "I", "We", "You",
}


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:;\"“"


def fact_spans(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of facts in ``text``: quoted titles, dates, numbers and
    capitalised names, in that order of precedence. A name's kind carries its word count (``name2``), so
    a two-word name is swapped for another two-word name; a single capitalised word that starts a
    sentence is not taken for a name."""
    spans: list[tuple[int, int, str]] = []
    for kind, pattern in FACT_PATTERNS.items():
        for match in pattern.finditer(text):
            group = 1 if pattern.groups else 0
            start, end = match.span(group)
            label = kind
            if kind == "name":
                words = match.group().split()
                if match.group() in _COMMON or (len(words) == 1 and _sentence_start(text, start)):
                    continue
                label = f"name{len(words)}"
            if all(end <= s or start >= e for s, e, _ in spans):
                spans.append((start, end, label))
    return sorted(spans)


def _plain(text: str) -> str:
    return text.lower().replace("’", "'")


def perturb_answers(
    items: Sequence[PromptItem],
    n: int = 5,
    *,
    pool: Sequence[PromptItem] = (),
    rank: Callable[[list[tuple[str, str]]], Sequence[float]] | None = None,
    candidates: int = 12,
    seed: int = 0,
) -> list[PromptItem]:
    """``items`` with ``n`` perturbed answers each and the answer as the paraphrased one; items that
    already have perturbed answers are kept as they are.

    A perturbed answer swaps one of the answer's facts for a different fact of the same kind from the
    other items' answers and ``pool``. Without ``rank`` the facts are taken in turn and the swaps drawn at
    random. With ``rank`` (scores of ``(prompt, answer)`` pairs, higher for more plausible, e.g. a
    model's mean log-probability), up to ``candidates`` swaps per fact are drawn and the ``n`` most
    plausible kept: like TOFU's hand-written ones, wrong answers a reader could believe. An item whose
    answer has no fact outside its question gets no perturbed answers (objectives that need them skip it).
    """
    if n < 1 or candidates < 1:
        raise ItemsError("perturb_answers needs n >= 1 and candidates >= 1")
    rng = random.Random(seed)
    facts: dict[str, set[str]] = {}
    for item in [*items, *pool]:
        for start, end, kind in fact_spans(item.answer or ""):
            facts.setdefault(kind, set()).add(item.answer[start:end])
    choices = {kind: sorted(values) for kind, values in facts.items()}
    drafts: list[list[str]] = []
    for item in items:
        answer = item.answer or ""
        spans = [] if item.perturbed_answers else [
            (s, e, kind) for s, e, kind in fact_spans(answer)
            if _plain(answer[s:e]) not in _plain(item.prompt) and len(choices[kind]) > 1
        ]
        swaps = [[f for f in choices[kind] if f != answer[s:e]] for s, e, kind in spans]
        if rank is None:
            picks = [(j % len(spans), rng.choice(swaps[j % len(spans)])) for j in range(n if spans else 0)]
        else:
            picks = [(k, f) for k, options in enumerate(swaps) for f in rng.sample(options, min(candidates, len(options)))]
        drafts.append([answer[: spans[k][0]] + fact + answer[spans[k][1] :] for k, fact in picks])
    if rank is not None:
        pairs = [(item.prompt, text) for item, texts in zip(items, drafts) for text in texts]
        scores = iter(rank(pairs)) if pairs else iter(())
        drafts = [
            [text for _, text in sorted(((next(scores), t) for t in texts), key=lambda st: -st[0])][:n]
            for texts in drafts
        ]
    return [
        item if item.perturbed_answers or not texts
        else replace(item, paraphrased_answer=item.paraphrased_answer or item.answer, perturbed_answers=tuple(texts))
        for item, texts in zip(items, drafts)
    ]
