"""How a prefill batch reaches any causal LM: what its ``forward`` and ``generate`` accept, and a fallback
for the models that cannot take ``inputs_embeds`` the usual way.

``ModelInputs.of(model)`` reads the model's signatures once (never its name); ``prefill`` yields the token
arguments of one forward or ``generate`` call whose prefill embeds the prompts as ``batch.inputs_embeds``.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..errors import ModelError
from .guard import GuardDecision

__all__ = ["ModelInputs", "PrefillInputs"]


@dataclass
class PrefillInputs:
    """What the prefill pass receives for a left-padded batch.

    ``inputs_embeds`` is None when no prompt is flagged (then ``input_ids`` is all the model needs);
    otherwise it holds every row's embeddings, corrupted where the guard decided.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    inputs_embeds: torch.Tensor | None
    decisions: list[GuardDecision]

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each row's first real token (left padding does not shift them)."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)


@dataclass(frozen=True)
class ModelInputs:
    """Which optional arguments a model's forward pass takes, read from its signatures."""

    keeps_logits: bool  # logits_to_keep: saves a [B, T, V] tensor on large vocabularies
    takes_positions: bool  # ALiBi models (BLOOM, MPT) read positions off the attention mask instead
    embeds_ids_too: bool  # per-layer token embeddings (Gemma 3n, Gemma 4) look the ids up in another table
    generate_takes_embeds: bool  # generate() refuses inputs_embeds where prepare_inputs_for_generation lacks them

    @classmethod
    def of(cls, model: Any) -> "ModelInputs":
        forward = inspect.signature(model.forward).parameters
        base = getattr(model, "base_model", model)
        prepare = getattr(model, "prepare_inputs_for_generation", None)
        return cls(
            keeps_logits="logits_to_keep" in forward,
            takes_positions="position_ids" in forward,
            embeds_ids_too="per_layer_inputs" in inspect.signature(base.forward).parameters,
            generate_takes_embeds=prepare is not None and "inputs_embeds" in inspect.signature(prepare).parameters,
        )

    def forward_kwargs(self, batch: PrefillInputs, keep: int) -> dict[str, Any]:
        """The arguments of a scoring forward pass besides the tokens: mask, positions, logits to keep."""
        extra: dict[str, Any] = {"attention_mask": batch.attention_mask}
        if self.keeps_logits:
            extra["logits_to_keep"] = keep
        if self.takes_positions:
            extra["position_ids"] = batch.position_ids
        return extra

    @contextlib.contextmanager
    def prefill(self, model: Any, batch: PrefillInputs, *, generating: bool) -> Iterator[dict[str, torch.Tensor]]:
        """The token arguments of a forward pass (``generating``: of ``model.generate``) whose prefill embeds
        the prompts as ``batch.inputs_embeds``.

        Most models take ``inputs_embeds``. Models with per-layer token embeddings need the ids as well, and
        some ``generate`` refuse ``inputs_embeds``; these get ``input_ids`` instead, and their embedding layer
        returns ``batch.inputs_embeds`` in the one call that embeds the prompt batch. If that call never
        happens, ``ModelError``: a flagged prompt is never answered uncorrupted.
        """
        if batch.inputs_embeds is None:
            yield {"input_ids": batch.input_ids}
            return
        if not self.embeds_ids_too and (not generating or self.generate_takes_embeds):
            # generate() also gets the ids it returns ahead of the new tokens
            yield {"inputs_embeds": batch.inputs_embeds, **({"input_ids": batch.input_ids} if generating else {})}
            return
        pending = [batch.inputs_embeds]

        def swap(module: Any, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
            ids = args[0] if args else next(iter(kwargs.values()), None)
            hit = bool(pending) and isinstance(ids, torch.Tensor) and torch.equal(ids, batch.input_ids)
            return pending.pop() if hit else None

        handle = model.get_input_embeddings().register_forward_hook(swap, with_kwargs=True)
        try:
            yield {"input_ids": batch.input_ids}
        finally:
            handle.remove()
        if pending:
            raise ModelError(f"{type(model).__name__} did not embed the prompts, so none could be corrupted")
