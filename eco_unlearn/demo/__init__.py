"""The built-in demo: make a model forget the Harry Potter universe (``eco-unlearn demo``)."""

from .keyword import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS, keyword_demo_guard
from .target import DEMO_ENTITIES, DemoData, demo_data, demo_fit_config, demo_guard_path, fit_demo_guard

__all__ = [
    "DEMO_CLEAN_PROMPTS",
    "DEMO_ENTITIES",
    "DEMO_FORGET_PROMPTS",
    "DemoData",
    "demo_data",
    "demo_fit_config",
    "demo_guard_path",
    "fit_demo_guard",
    "keyword_demo_guard",
]
