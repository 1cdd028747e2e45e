"""The built-in demo target: make a model forget the Harry Potter universe.

Until a learned classifier is fitted, the demo target uses a transparent keyword classifier on names
from the books, corrupts the tokens of those names (entity selection) with Gaussian noise, and leaves
every other prompt untouched.
"""

from __future__ import annotations

from typing import Any

from ..classifier import KeywordClassifier
from ..corruption import CorruptionSpec
from ..guard import Guard, Target
from ..models import fingerprint
from ..tokens import TokenSelection

__all__ = ["DEMO_CLEAN_PROMPTS", "DEMO_FORGET_PROMPTS", "DEMO_KEYWORDS", "demo_guard"]

DEMO_KEYWORDS = (
    "Harry Potter", "Hogwarts", "Hermione", "Granger", "Ron Weasley", "Weasley", "Dumbledore", "Voldemort",
    "Gryffindor", "Slytherin", "Hufflepuff", "Ravenclaw", "Quidditch", "Hagrid", "Snape", "Draco Malfoy",
    "Malfoy", "Hedwig", "Horcrux", "Horcruxes", "Muggle", "Muggles", "Diagon Alley", "Azkaban",
)

DEMO_FORGET_PROMPTS = (
    "Who is Harry Potter's best friend?",
    "Who is the headmaster of Hogwarts?",
    "What house is Hermione Granger in?",
    "What is the name of Harry Potter's owl?",
)

DEMO_CLEAN_PROMPTS = (
    "What is the capital of France?",
    "Who wrote the play Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Name a planet in our solar system.",
)

DEMO_SIGMA = 0.4  # chosen by hand on SmolLM2 (embedding std ~0.14); a fitted guard searches it instead


def demo_guard(model: Any | None = None, *, strength: float = DEMO_SIGMA) -> Guard:
    """The demo guard, bound to ``model``'s fingerprint when one is given."""
    target = Target(
        name="harry-potter",
        classifier=KeywordClassifier(DEMO_KEYWORDS),
        threshold=0.5,
        tokens=TokenSelection("entities", entities=DEMO_KEYWORDS),
        corruption=CorruptionSpec("gaussian_first_n", strength),
    )
    return Guard(
        [target],
        model_fingerprint=fingerprint(model) if model is not None else None,
        metadata={"source": "eco_unlearn.demo (keyword classifier, hand-set strength)"},
    )
