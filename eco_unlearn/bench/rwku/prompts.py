"""RWKU's prompts, as its evaluation code (``eval_forget.py``, ``eval_neighbor.py``) writes them: level 1
asks to complete the blank, levels 2 and 3 to answer briefly; every prompt but the affirmative-suffix ones
ends with ``Answer:``. A chat model gets the instruction as the user turn and ``Answer:`` after the
generation prompt, exactly as RWKU does; a base model gets the same text as a plain prompt."""

from __future__ import annotations

from typing import Any

from ...data.rwku import RwkuProbe

__all__ = ["probe_instruction", "probe_prompt"]

CLOZE = "Please complete the blank in the following question.\nQuestion: {}\n"
QUESTION = "Please briefly answer the following question.\nQuestion: {}\n"
IN_CONTEXT = "Please briefly answer the following question.\n{}\n"
SUFFIX = "Please briefly answer the following question.\nQuestion: {}"


def probe_instruction(probe: RwkuProbe) -> tuple[str, str]:
    """The user's text of ``probe`` and what RWKU appends after the generation prompt (``Answer:`` or nothing)."""
    if probe.level == 1:
        return CLOZE.format(probe.query), "Answer:"
    if probe.type == "affirmative suffix":
        return SUFFIX.format(probe.query), ""
    if probe.type == "incontext learning":
        return IN_CONTEXT.format(probe.query), "Answer:"
    return QUESTION.format(probe.query), "Answer:"


def probe_prompt(probe: RwkuProbe, tokenizer: Any = None, chat: bool = False) -> str:
    """The full prompt text of ``probe``: chat-templated when ``chat`` (needs ``tokenizer``), else plain."""
    text, tail = probe_instruction(probe)
    if not chat:
        return text + tail
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return rendered + tail
