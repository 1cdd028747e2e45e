"""Prompt data: prompt files read into ``PromptItem``s, the built-in everyday prompts, perturbed answers."""

from .local import DATA_ENV, read_json_rows, resolve_dataset_dir
from .mmlu import McqQuestion, load_mcq_file, load_mmlu, mmlu_subjects
from .items import PromptItem, find_overlap, general_prompts, normalize_prompt, read_items
from .perturb import fact_spans, perturb_answers

__all__ = ["DATA_ENV", "McqQuestion", "PromptItem", "fact_spans", "find_overlap", "general_prompts", "load_mcq_file",
           "load_mmlu", "mmlu_subjects", "normalize_prompt", "perturb_answers", "read_items", "read_json_rows",
           "resolve_dataset_dir"]
