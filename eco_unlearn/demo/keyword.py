"""An instant, keyword-only version of the demo guard, for tests and benchmarks of the guard machinery.

It flags prompts naming the books with a keyword classifier and adds noise of a hand-set strength (3
embedding standard deviations) to those names' tokens: no encoder, no fitting. The real demo fits its
guard (``fit_demo_guard``).
"""

from __future__ import annotations

from typing import Any

from ..classifier import KeywordClassifier
from ..runtime.corruption import CorruptionSpec
from ..runtime.guard import Guard, Target
from ..models import embedding_scale, fingerprint
from ..runtime.tokens import TokenSelection
from .target import DEMO_ENTITIES

__all__ = ["DEMO_CLEAN_PROMPTS", "DEMO_FORGET_PROMPTS", "keyword_demo_guard"]

DEMO_FORGET_PROMPTS = (  # questions SmolLM2 answers correctly without a guard
    "Who is Harry Potter's best friend?",
    "Who wrote the Harry Potter books?",
    "What is the name of Harry Potter's school?",
    "Who is the main villain of the Harry Potter series?",
)

DEMO_CLEAN_PROMPTS = (
    "Which wizard leads the Fellowship of the Ring?",
    "What is the capital of France?",
    "Who wrote the play Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Name a planet in our solar system.",
)

# Noise of 3 embedding standard deviations, set by hand on SmolLM2 (std 0.136, so sigma 0.41).
DEMO_RELATIVE_SIGMA = 3.0


def keyword_demo_guard(model: Any, *, strength: float | None = None) -> Guard:
    """The keyword demo guard for ``model``: its sigma is 3x the model's embedding scale unless ``strength`` is given."""
    if strength is None:
        strength = DEMO_RELATIVE_SIGMA * embedding_scale(model)
    target = Target(
        name="harry-potter",
        classifier=KeywordClassifier(DEMO_ENTITIES),
        corruption=CorruptionSpec("gaussian_first_n", strength),
        threshold=0.5,
        tokens=TokenSelection("entities", entities=DEMO_ENTITIES),
    )
    return Guard(
        [target],
        model_fingerprint=fingerprint(model),
        metadata={"source": "eco_unlearn.demo (keyword classifier, strength set by hand relative to the embedding scale)"},
    )
