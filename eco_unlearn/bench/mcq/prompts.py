"""Zero-shot multiple-choice prompts in MMLU's published format, and the answer letters' token ids.

The letters prompt is lm-evaluation-harness's ``mmlu`` prompt (Hendrycks et al.'s zero-shot format)::

    The following are multiple choice questions (with answers) about high school physics.

    <question>
    A. <choice>
    B. <choice>
    ...
    Answer:

the cloze prompt drops the listed choices: each choice is scored as the continuation of ``Answer:``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...data.mmlu import McqQuestion
from ...errors import DatasetError

__all__ = ["LETTERS", "cloze_prompt", "header", "letter_prefix", "letter_token_ids", "letters_prompt"]

LETTERS = "ABCDEFGHIJ"


def header(question: McqQuestion) -> str:
    """MMLU's subject header, or the subject-free one when the question has no subject (WMDP files)."""
    about = f" about {question.subject_name}" if question.subject else ""
    return f"The following are multiple choice questions (with answers){about}.\n\n"


def _check_size(question: McqQuestion) -> None:
    if len(question.choices) > len(LETTERS):
        raise DatasetError(f"{question.source or 'a question'} has {len(question.choices)} choices; at most {len(LETTERS)} are lettered")


def letters_prompt(question: McqQuestion) -> str:
    """The question with its lettered choices, ending in ``Answer:``; the model's next token is the letter."""
    _check_size(question)
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices))
    return f"{header(question)}{question.question.strip()}\n{options}\nAnswer:"


def cloze_prompt(question: McqQuestion) -> str:
    """The question alone, ending in ``Answer:``; each choice is scored as its continuation."""
    return f"{header(question)}{question.question.strip()}\nAnswer:"


def letter_prefix(tokenizer: Any, n: int = 4) -> str:
    """What precedes each answer letter as the token that follows ``Answer:``: " " or "".

    Tokenizers differ: most encode " A" (a space and the letter) as one token, which is what follows
    ``Answer:`` in text; some split it, and then the bare letter "A" is the token the model predicts.
    The space-led form is used when every letter has a one-token space-led form, else the bare form.
    """
    letters = LETTERS[:n]
    for prefix in (" ", ""):
        ids: Sequence[list[int]] = [tokenizer(prefix + c, add_special_tokens=False)["input_ids"] for c in letters]
        if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == n:
            return prefix
    raise DatasetError("this tokenizer gives the answer letters no distinct one-token forms; score by choice likelihood only")


def letter_token_ids(tokenizer: Any, n: int = 4) -> list[int]:
    """The token of each of the first ``n`` answer letters as it follows ``Answer:`` (``letter_prefix``)."""
    prefix = letter_prefix(tokenizer, n)
    return [tokenizer(prefix + c, add_special_tokens=False)["input_ids"][0] for c in LETTERS[:n]]
