"""The per-prompt runtime: render a prompt, let the guard decide, select tokens, corrupt their embeddings.

``GuardedModel`` wraps any causal LM; ``Guard`` (targets: classifier, threshold, token selection,
corruption) is the artifact it applies. Everything here runs per request; nothing here trains.
"""

from .corruption import CORRUPTIONS, Corruption, CorruptionSpec, apply_corruption, get_corruption, register_corruption
from .guard import Guard, GuardDecision, Target, strongest_corruptions
from .guarded import GuardedModel
from .prefill import ModelInputs, PrefillInputs
from .plan import EncodedPrompt, Plan, PlannedPrompt, encode_prompts
from .prompts import PromptInput, RenderedPrompt, render_prompts
from .tokens import SELECTION_STRATEGIES, TokenSelection

__all__ = [
    "CORRUPTIONS", "SELECTION_STRATEGIES", "Corruption", "CorruptionSpec", "EncodedPrompt", "Guard", "GuardDecision",
    "GuardedModel", "ModelInputs", "Plan", "PlannedPrompt", "PrefillInputs", "PromptInput", "RenderedPrompt", "Target",
    "TokenSelection", "apply_corruption", "encode_prompts", "get_corruption", "register_corruption", "render_prompts",
    "strongest_corruptions",
]
