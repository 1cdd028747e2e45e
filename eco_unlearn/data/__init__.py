"""Prompt data: prompt files read into ``PromptItem``s, the built-in everyday prompts, perturbed answers."""

from .items import PromptItem, find_overlap, general_prompts, normalize_prompt, read_items
from .perturb import fact_spans, perturb_answers

__all__ = ["PromptItem", "fact_spans", "find_overlap", "general_prompts", "normalize_prompt", "perturb_answers",
           "read_items"]
