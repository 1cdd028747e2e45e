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
from ..models import embedding_scale, fingerprint
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

# Noise of 3 embedding standard deviations: chosen by hand on SmolLM2 (std 0.136, so sigma 0.41) to make
# it forget while still answering fluently; a fitted guard searches the strength instead.
DEMO_RELATIVE_SIGMA = 3.0


def demo_guard(model: Any, *, strength: float | None = None) -> Guard:
    """The demo guard for ``model``: its sigma is 3x the model's embedding scale unless ``strength`` is given."""
    if strength is None:
        strength = DEMO_RELATIVE_SIGMA * embedding_scale(model)
    target = Target(
        name="harry-potter",
        classifier=KeywordClassifier(DEMO_KEYWORDS),
        corruption=CorruptionSpec("gaussian_first_n", strength),
        threshold=0.5,
        tokens=TokenSelection("entities", entities=DEMO_KEYWORDS),
    )
    return Guard(
        [target],
        model_fingerprint=fingerprint(model),
        metadata={"source": "eco_unlearn.demo (keyword classifier, strength set by hand relative to the embedding scale)"},
    )
