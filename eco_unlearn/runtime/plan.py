"""A plan: every prompt of a batch rendered, tokenized, decided and masked, ready for the prefill pass.

``GuardedModel.plan`` builds one; ``generate``, ``score``, ``next_token_logits``, ``decide`` and
``prefill_inputs`` accept one in place of prompts. A caller that must look at a batch before running it (a
server that fails closed, a gateway that sends prompt embeddings elsewhere) plans once and runs from that
plan, so no prompt is rendered or tokenized twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .guard import GuardDecision
from .prompts import PromptInput, RenderedPrompt, render_prompts

__all__ = ["EncodedPrompt", "Plan", "PlannedPrompt", "encode_prompts", "token_mask"]


@dataclass(frozen=True)
class EncodedPrompt:
    """A rendered prompt tokenized once: its token ids and each token's character span in ``prompt.text``
    (what token selection maps the user's text through)."""

    prompt: RenderedPrompt
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]


def encode_prompts(
    prompts: PromptInput | Sequence[PromptInput], tokenizer: Any, *, chat: bool = False
) -> list[EncodedPrompt]:
    """Render ``prompts`` (see ``render_prompts``) and tokenize each one, with character offsets."""
    encoded = []
    for prompt in render_prompts(prompts, tokenizer, chat=chat):
        enc = tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens, return_offsets_mapping=True)
        encoded.append(EncodedPrompt(prompt, tuple(enc["input_ids"]), tuple(tuple(o) for o in enc["offset_mapping"])))
    return encoded


def token_mask(encoded: EncodedPrompt, decision: GuardDecision, special_ids: set[int]) -> list[bool]:
    """Which tokens of ``encoded`` to corrupt (True): the union of the decision's token selections, none
    when the prompt is not flagged."""
    mask = [False] * len(encoded.ids)
    if decision.flagged:
        special = [t in special_ids for t in encoded.ids]
        for selection in decision.selections:
            for j in selection.select(encoded.prompt, encoded.offsets, special):
                mask[j] = True
    return mask


@dataclass
class PlannedPrompt:
    """One prompt of a plan.

    ``ids`` are the token ids the model sees (the newest ones, if the prompt was truncated from the left),
    ``mask`` says per id whether its embedding is corrupted, and ``decision`` is the guard's, with
    ``corrupted_tokens`` counted from ``mask``. ``encoded`` is the whole tokenization, before truncation:
    planning it again (``GuardedModel.plan``) with other decisions needs no new tokenization.
    """

    encoded: EncodedPrompt
    ids: list[int]
    mask: list[bool]
    decision: GuardDecision

    @property
    def prompt(self) -> RenderedPrompt:
        """The rendered prompt: its text and where the user's text sits in it."""
        return self.encoded.prompt


@dataclass
class Plan:
    """A batch of planned prompts and ``seed``, the seed of their noise (the guard's)."""

    rows: list[PlannedPrompt]
    seed: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def decisions(self) -> list[GuardDecision]:
        """Each prompt's decision, in order."""
        return [row.decision for row in self.rows]

    @property
    def encoded(self) -> list[EncodedPrompt]:
        """Each prompt's whole tokenization, in order: what ``GuardedModel.plan`` takes to plan it again."""
        return [row.encoded for row in self.rows]
