"""The forget settings of the MMLU-subset experiment (ECO paper, section 5) and how questions are split.

Each subject's test questions are shuffled once (seeded by the subject's name and the seed); the first
``focus`` of a forget or related subject (at most half of its questions, so every subject keeps half for
training) and the first ``other`` of any other subject are scored, and only questions past that boundary
ever train the classifier, so no scored question is seen in training in any setting.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...data.mmlu import McqQuestion
from ...errors import DatasetError
from ...registry import Registry
from ...validation import integer

__all__ = ["SETTINGS", "McqSetting", "SampleSizes", "boundary", "by_subject", "scored_questions", "training_pool"]


@dataclass(frozen=True)
class McqSetting:
    """Forget ``forget``'s subjects, keep ``related``'s (the closest subjects) and every other one."""

    name: str
    forget: tuple[str, ...]
    related: tuple[str, ...]
    note: str = ""

    def role(self, subject: str) -> str:
        return "forget" if subject in self.forget else "related" if subject in self.related else "other"


SETTINGS: Registry[McqSetting] = Registry("MMLU setting", error=DatasetError)
SETTINGS.register("economics", McqSetting(
    "economics", ("high_school_macroeconomics", "high_school_microeconomics"), ("econometrics",)))
SETTINGS.register("physics", McqSetting(
    "physics", ("college_physics", "conceptual_physics", "high_school_physics"),
    ("college_mathematics", "high_school_mathematics")))
SETTINGS.register("law", McqSetting("law", ("international_law", "professional_law"), ("jurisprudence",)))
SETTINGS.register("above-chance", McqSetting(
    "above-chance", ("astronomy", "high_school_government_and_politics", "high_school_psychology"),
    ("high_school_geography",),
    note="chosen before any fit from Gemma-3-270M's bare letters accuracy on 6 questions per subject "
         "(benchmarks/results/mcq/subjects.md): its three best subjects, and a neighbour of them to keep"))


@dataclass(frozen=True)
class SampleSizes:
    """Questions scored per subject: ``focus`` for forget and related subjects, ``other`` for the rest
    (None: all)."""

    focus: int | None = None
    other: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("focus", "other"):
            if getattr(self, name) is not None:
                integer(getattr(self, name), name, minimum=1, error=DatasetError)
        if self.focus is not None and self.other is not None and self.other > self.focus:
            raise DatasetError("the sample of other subjects cannot exceed the focus sample; lower 'other'")


def by_subject(questions: Sequence[McqQuestion], seed: int = 0) -> dict[str, list[McqQuestion]]:
    """Each subject's questions in its own seeded shuffled order."""
    groups: dict[str, list[McqQuestion]] = {}
    for q in questions:
        groups.setdefault(q.subject, []).append(q)
    for subject, items in groups.items():
        digest = hashlib.blake2b(f"{seed}:{subject}".encode(), digest_size=8).digest()
        order = np.random.default_rng(int.from_bytes(digest, "little")).permutation(len(items))
        groups[subject] = [items[i] for i in order]
    return dict(sorted(groups.items()))


def boundary(n_questions: int, sizes: SampleSizes) -> int | None:
    """How many of a subject's questions any setting may score: ``focus``, at most half of them (None: all)."""
    return None if sizes.focus is None else min(sizes.focus, n_questions // 2)


def scored_questions(groups: dict[str, list[McqQuestion]], setting: McqSetting | None, sizes: SampleSizes) -> list[McqQuestion]:
    """The questions scored in ``setting`` (None: every subject at the ``other`` size)."""
    out = []
    for subject, items in groups.items():
        limit = boundary(len(items), sizes)
        n = limit if setting is not None and setting.role(subject) != "other" else sizes.other
        if limit is not None:  # past the boundary lies the training pool, whatever the other sample's size
            n = limit if n is None else min(n, limit)
        out.extend(items if n is None else items[:n])
    return out


def training_pool(groups: dict[str, list[McqQuestion]], subjects: Sequence[str], sizes: SampleSizes) -> list[McqQuestion]:
    """Questions of ``subjects`` that no setting scores (those past the boundary), subjects interleaved
    round-robin so that any prefix (a split, the strength search's items) draws on every subject alike."""
    if sizes.focus is None:
        return []
    pools = [groups.get(s, [])[boundary(len(groups.get(s, [])), sizes) :] for s in subjects]
    return [q for row in itertools.zip_longest(*pools) for q in row if q is not None]
