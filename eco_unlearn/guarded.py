"""GuardedModel: a frozen causal LM whose flagged prompts get corrupted input embeddings.

The corruption touches the prompt's input embeddings only, in the prefill pass only: generated tokens
are embedded normally by the model, and scored continuations are never corrupted. Batches with no
flagged prompt run the plain ``input_ids`` path, so unflagged traffic costs nothing extra.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from .corruption import apply_corruption
from .errors import PromptError
from .guard import Guard, GuardDecision
from .models import context_length
from .prompts import PromptInput, RenderedPrompt, render_prompts

__all__ = ["GuardedModel"]

Truncation = Literal["error", "left"]


@dataclass
class _Encoded:
    """One tokenized prompt with its corruption mask (True = corrupt this token)."""

    ids: list[int]
    mask: list[bool]
    decision: GuardDecision


class GuardedModel:
    """Wrap ``model`` and ``tokenizer`` with ``guard``; the weights are never modified.

    ``truncation`` says what happens to a prompt longer than the model's context: ``"error"`` (the
    default) refuses it, ``"left"`` drops its oldest tokens with a warning.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        guard: Guard | None = None,
        *,
        force: bool = False,
        truncation: Truncation = "error",
        max_length: int | None = None,
    ) -> None:
        if truncation not in ("error", "left"):
            raise PromptError(f"truncation must be 'error' or 'left', not {truncation!r}")
        if not getattr(tokenizer, "is_fast", False):
            raise PromptError("GuardedModel needs a fast tokenizer (character offsets map entities to tokens)")
        self.model = model
        self.tokenizer = tokenizer
        self.truncation = truncation
        self.max_length = max_length or context_length(model)
        self._special_ids = set(tokenizer.all_special_ids)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.guard: Guard | None = None
        if guard is not None:
            self.attach(guard, force=force)

    def attach(self, guard: Guard | None, *, force: bool = False) -> None:
        """Use ``guard`` from now on (None removes it), after checking it was built for this model."""
        if guard is not None:
            guard.check_model(self.model, force=force)
        self.guard = guard

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    # ----------------------------------------------------------------------------------- encoding
    def _decide(self, rendered: list[RenderedPrompt]) -> list[GuardDecision]:
        if self.guard is None:
            return [GuardDecision(False, [], {}) for _ in rendered]
        return self.guard.decide([r.user_text for r in rendered])

    def _encode(self, rendered: list[RenderedPrompt], reserve: Sequence[int]) -> list[_Encoded]:
        """Tokenize, check length against the context (keeping ``reserve`` tokens free) and build masks."""
        decisions = self._decide(rendered)
        encoded = []
        for i, (prompt, decision, extra) in enumerate(zip(rendered, decisions, reserve, strict=True)):
            enc = self.tokenizer(
                prompt.text, add_special_tokens=prompt.add_special_tokens, return_offsets_mapping=True
            )
            ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
            special = [t in self._special_ids for t in ids]
            mask = [False] * len(ids)
            if decision.flagged:
                for name in decision.targets:
                    for j in self.guard.target(name).tokens.select(prompt, offsets, special):
                        mask[j] = True
            ids, mask = self._fit_context(i, ids, mask, extra)
            decision.corrupted_tokens = sum(mask)
            encoded.append(_Encoded(ids, mask, decision))
        return encoded

    def _fit_context(self, index: int, ids: list[int], mask: list[bool], extra: int) -> tuple[list[int], list[bool]]:
        if self.max_length is None or len(ids) + extra <= self.max_length:
            return ids, mask
        budget = self.max_length - extra
        if self.truncation == "error" or budget <= 0:
            raise PromptError(
                f"prompt {index} has {len(ids)} tokens; with {extra} more tokens it exceeds the model's context "
                f"of {self.max_length}. Shorten it, lower the number of new tokens, or use truncation='left'"
            )
        warnings.warn(f"prompt {index} truncated from the left to {budget} of its {len(ids)} tokens", stacklevel=3)
        return ids[-budget:], mask[-budget:]

    def _row_generator(self, ids: Sequence[int]) -> torch.Generator:
        """Noise seeded from the guard seed and the prompt tokens: same prompt, same corruption."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(int(self.guard.seed).to_bytes(8, "little", signed=True))
        digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))

    def _batch(
        self, rows: list[_Encoded], tails: list[list[int]] | None = None, *, left_pad: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Pad ``rows`` (plus optional uncorrupted ``tails``) into ids, attention mask and, if any row is
        flagged, corrupted input embeddings."""
        tails = tails or [[] for _ in rows]
        seqs = [r.ids + t for r, t in zip(rows, tails)]
        width = max(len(s) for s in seqs)
        spans = [slice(width - len(s), width) if left_pad else slice(0, len(s)) for s in seqs]
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, (seq, span) in enumerate(zip(seqs, spans)):
            ids[b, span] = torch.tensor(seq)
            attention[b, span] = 1
        device = self.device
        ids, attention = ids.to(device), attention.to(device)
        if not any(any(r.mask) for r in rows):
            return ids, attention, None
        with torch.no_grad():
            embeds = self.model.get_input_embeddings()(ids)
        for b, (row, span) in enumerate(zip(rows, spans)):
            if not any(row.mask):
                continue
            # Corrupt the row's own prompt span, unpadded, so its noise never depends on its batch-mates.
            prompt = slice(span.start, span.start + len(row.ids))
            mask = torch.tensor([row.mask], device=device)
            generator = self._row_generator(row.ids)
            corrupted = embeds[b : b + 1, prompt]
            for spec in row.decision.corruptions:
                corrupted = apply_corruption(spec, corrupted, mask, generator)
            embeds[b : b + 1, prompt] = corrupted
        return ids, attention, embeds

    def _prepare(
        self, prompts: PromptInput | Sequence[PromptInput], chat: bool, reserve: int | Sequence[int] = 0
    ) -> list[_Encoded]:
        rendered = render_prompts(prompts, self.tokenizer, chat=chat)
        if isinstance(reserve, int):
            reserve = [reserve] * len(rendered)
        return self._encode(rendered, reserve)

    # ----------------------------------------------------------------------------------- public API
    def decide(self, prompts: PromptInput | Sequence[PromptInput], *, chat: bool = False) -> list[GuardDecision]:
        """The guard's decisions for ``prompts`` (targets, scores, tokens that would be corrupted)."""
        return [row.decision for row in self._prepare(prompts, chat)]

    @torch.no_grad()
    def generate(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        *,
        chat: bool = False,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        batch_size: int = 8,
        return_decisions: bool = False,
        **generate_kwargs: Any,
    ) -> list[str] | tuple[list[str], list[GuardDecision]]:
        """Generate a completion per prompt (greedy when ``temperature`` is 0).

        Prompts are strings or chat conversations (lists of ``{"role", "content"}``); ``chat=True``
        wraps plain strings in the chat template. Extra keyword arguments go to ``model.generate``.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise PromptError(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise PromptError("temperature must be >= 0 and top_p in (0, 1]")
        rows = self._prepare(prompts, chat, max_new_tokens)
        sampling = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling.update(temperature=temperature, top_p=top_p)
        texts: list[str] = []
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                ids, attention, embeds = self._batch(chunk, left_pad=True)
                inputs = {"input_ids": ids, "attention_mask": attention}
                if embeds is not None:
                    inputs["inputs_embeds"] = embeds
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self._pad_id,
                    **sampling,
                    **generate_kwargs,
                )
                new = out[:, ids.shape[1] :]
                texts.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        decisions = [r.decision for r in rows]
        return (texts, decisions) if return_decisions else texts

    @torch.no_grad()
    def score(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        continuations: str | Sequence[str],
        *,
        chat: bool = False,
        batch_size: int = 8,
        return_decisions: bool = False,
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[GuardDecision]]:
        """Per-token log-probabilities of each continuation given its (possibly corrupted) prompt.

        Continuation tokens are never corrupted. The prompt and continuation are tokenized separately
        and joined, so the continuation's tokens do not depend on the prompt.
        """
        if isinstance(continuations, str):
            continuations = [continuations]
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        for i, tail in enumerate(tails):
            if not tail:
                raise PromptError(f"continuation {i} is empty; there is nothing to score")
        rendered = render_prompts(prompts, self.tokenizer, chat=chat)
        if len(rendered) != len(tails):
            raise PromptError(f"got {len(rendered)} prompts but {len(tails)} continuations; give one per prompt")
        rows = self._encode(rendered, [len(t) for t in tails])
        results: list[torch.Tensor] = []
        for start in range(0, len(rows), batch_size):
            chunk, chunk_tails = rows[start : start + batch_size], tails[start : start + batch_size]
            ids, attention, embeds = self._batch(chunk, chunk_tails, left_pad=False)
            inputs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": ids}
            logits = self.model(**inputs, attention_mask=attention).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for b, (row, tail) in enumerate(zip(chunk, chunk_tails)):
                positions = torch.arange(len(row.ids) - 1, len(row.ids) + len(tail) - 1, device=logits.device)
                targets = torch.tensor(tail, device=logits.device)
                results.append(logprobs[b, positions, targets].cpu())
        decisions = [r.decision for r in rows]
        return (results, decisions) if return_decisions else results

    @torch.no_grad()
    def next_token_logits(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        *,
        chat: bool = False,
        batch_size: int = 8,
        return_decisions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[GuardDecision]]:
        """Logits ``[B, V]`` of the token after each prompt."""
        rows = self._prepare(prompts, chat)
        chunks = []
        for start in range(0, len(rows), batch_size):
            ids, attention, embeds = self._batch(rows[start : start + batch_size], left_pad=True)
            inputs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": ids}
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: count positions from each row's start
            logits = self.model(**inputs, attention_mask=attention, position_ids=positions).logits
            chunks.append(logits[:, -1].float().cpu())
        logits = torch.cat(chunks)
        decisions = [r.decision for r in rows]
        return (logits, decisions) if return_decisions else logits
