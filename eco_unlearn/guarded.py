"""GuardedModel: a frozen causal LM whose flagged prompts get corrupted input embeddings.

The corruption touches the prompt's input embeddings only, in the prefill pass only: generated tokens
are embedded normally by the model, and scored continuations are never corrupted. Batches with no
flagged prompt run the plain ``input_ids`` path, so unflagged traffic costs nothing extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Iterator, Literal, Sequence

import torch

from .corruption import apply_corruption
from .errors import ModelError, PromptError
from .guard import Guard, GuardDecision
from .models import context_length
from .prompts import PromptInput, RenderedPrompt, render_prompts

__all__ = ["GuardedModel", "PrefillInputs", "check_generation_args"]

Truncation = Literal["error", "left"]
Prompts = PromptInput | Sequence[PromptInput]


@dataclass
class _Row:
    """One tokenized prompt with its corruption mask (True = corrupt this token)."""

    ids: list[int]
    mask: list[bool]
    decision: GuardDecision


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


def check_generation_args(max_new_tokens: int, temperature: float, top_p: float) -> None:
    """Raise ``PromptError`` for generation settings no model can honour."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise PromptError(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}")
    if not temperature >= 0:
        raise PromptError(f"temperature must be >= 0, not {temperature!r}")
    if not 0 < top_p <= 1:
        raise PromptError(f"top_p must lie in (0, 1], not {top_p!r}")


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
        forward_args = inspect.signature(model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward_args
        # ALiBi models (BLOOM, MPT) take no position_ids: they read positions off the attention mask, and
        # BLOOM in transformers 4.x warns on every call that gets them
        self._takes_positions = "position_ids" in forward_args
        # models with per-layer token embeddings (Gemma 3n, Gemma 4) also look input_ids up in another table
        base = getattr(model, "base_model", model)
        self._embeds_ids_too = "per_layer_inputs" in inspect.signature(base.forward).parameters
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

    # ------------------------------------------------------------------------------------ encoding
    def _rows(self, prompts: Prompts, chat: bool, reserve: int | Sequence[int] = 0, *, warn: bool = True) -> list[_Row]:
        """Render, classify and tokenize prompts, check them against the context (keeping ``reserve``
        tokens free per prompt) and build their corruption masks. ``warn=False`` is for callers that
        handle a flagged prompt with an empty mask themselves (the server fails closed on it)."""
        rendered = render_prompts(prompts, self.tokenizer, chat=chat)
        reserve = [reserve] * len(rendered) if isinstance(reserve, int) else list(reserve)
        if len(reserve) != len(rendered):
            raise PromptError(f"got {len(rendered)} prompts but {len(reserve)} continuations; give one per prompt")
        if self.guard is None:
            decisions = [GuardDecision(False, [], {}) for _ in rendered]
        else:
            decisions = self.guard.decide([r.user_text for r in rendered])
        return [self._row(i, *args, warn=warn) for i, args in enumerate(zip(rendered, decisions, reserve))]

    def _row(self, index: int, prompt: RenderedPrompt, decision: GuardDecision, reserve: int, *,
             warn: bool = True) -> _Row:
        enc = self.tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        mask = [False] * len(ids)
        if decision.flagged:
            special = [t in self._special_ids for t in ids]
            for name in decision.targets:
                for j in self.guard.target(name).tokens.select(prompt, offsets, special):
                    mask[j] = True
        ids, mask = self._fit_context(index, ids, mask, reserve)
        if warn and decision.flagged and not any(mask):
            warnings.warn(
                f"prompt {index} was flagged by {', '.join(decision.targets)} but its token selection picked no "
                "token of the user's text, so it is answered uncorrupted",
                stacklevel=4,
            )
        return _Row(ids, mask, replace(decision, corrupted_tokens=sum(mask)))

    def _fit_context(self, index: int, ids: list[int], mask: list[bool], extra: int) -> tuple[list[int], list[bool]]:
        if self.max_length is None or len(ids) + extra <= self.max_length:
            return ids, mask
        budget = self.max_length - extra
        if budget <= 0:
            raise PromptError(
                f"prompt {index}: {extra} new or scored tokens leave no room in the model's context of "
                f"{self.max_length}; ask for fewer"
            )
        if self.truncation == "error":
            raise PromptError(
                f"prompt {index} has {len(ids)} tokens; with {extra} more tokens it exceeds the model's context "
                f"of {self.max_length}. Shorten it, lower the number of new tokens, or use truncation='left'"
            )
        warnings.warn(f"prompt {index} truncated from the left to {budget} of its {len(ids)} tokens", stacklevel=4)
        return ids[-budget:], mask[-budget:]

    def _row_generator(self, ids: Sequence[int]) -> torch.Generator:
        """Noise seeded from the guard seed and the prompt tokens: same prompt, same corruption."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(int(self.guard.seed).to_bytes(8, "little", signed=True))
        digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))

    def _batch(self, rows: list[_Row], tails: Sequence[list[int]] | None = None) -> PrefillInputs:
        """Left-pad ``rows`` (each followed by its uncorrupted ``tail``, if given) into a batch, with
        corrupted input embeddings if any row has tokens to corrupt."""
        tails = tails or [[] for _ in rows]
        seqs = [r.ids + t for r, t in zip(rows, tails)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, seq in enumerate(seqs):
            ids[b, width - len(seq) :] = torch.tensor(seq)
            attention[b, width - len(seq) :] = 1
        ids, attention = ids.to(self.device), attention.to(self.device)
        decisions = [r.decision for r in rows]
        if not any(any(r.mask) for r in rows):
            return PrefillInputs(ids, attention, None, decisions)
        with torch.no_grad():
            embeds = self.model.get_input_embeddings()(ids)
        for b, (row, seq) in enumerate(zip(rows, seqs)):
            if not any(row.mask):
                continue
            # Corrupt the row's own prompt span, unpadded, so its noise never depends on its batch-mates.
            start = width - len(seq)
            prompt = slice(start, start + len(row.ids))
            mask = torch.tensor([row.mask], device=self.device)
            generator = self._row_generator(row.ids)
            corrupted = embeds[b : b + 1, prompt]
            for spec in row.decision.corruptions:
                corrupted = apply_corruption(spec, corrupted, mask, generator)
            embeds[b : b + 1, prompt] = corrupted
        return PrefillInputs(ids, attention, embeds, decisions)

    @contextlib.contextmanager
    def _prefill(self, batch: PrefillInputs, *, generating: bool) -> Iterator[dict[str, torch.Tensor]]:
        """The token arguments of a forward pass (``generating``: of ``model.generate``) whose prefill embeds
        the prompts as ``batch.inputs_embeds``.

        Most models take ``inputs_embeds``. Models with per-layer token embeddings need the ids as well, and
        ``generate`` refuses ``inputs_embeds`` where ``prepare_inputs_for_generation`` does not name them (the
        test transformers itself makes); these models get ``input_ids`` instead, and their embedding layer
        returns ``batch.inputs_embeds`` in the one call that embeds the prompt batch.
        """
        if batch.inputs_embeds is None:
            yield {"input_ids": batch.input_ids}
            return
        takes_embeds = not self._embeds_ids_too and (
            not generating or "inputs_embeds" in inspect.signature(self.model.prepare_inputs_for_generation).parameters
        )
        if takes_embeds:
            # generate() also gets the ids it returns ahead of the new tokens
            yield {"inputs_embeds": batch.inputs_embeds, **({"input_ids": batch.input_ids} if generating else {})}
            return
        pending = [batch.inputs_embeds]

        def swap(module: Any, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
            ids = args[0] if args else next(iter(kwargs.values()), None)
            hit = bool(pending) and isinstance(ids, torch.Tensor) and torch.equal(ids, batch.input_ids)
            return pending.pop() if hit else None

        handle = self.model.get_input_embeddings().register_forward_hook(swap, with_kwargs=True)
        try:
            yield {"input_ids": batch.input_ids}
        finally:
            handle.remove()
        if pending:  # fail closed: a flagged prompt is never answered uncorrupted
            raise ModelError(f"{type(self.model).__name__} did not embed the prompts, so none could be corrupted")

    def _forward(self, batch: PrefillInputs, keep: int) -> torch.Tensor:
        """Logits of the last ``keep`` positions of a left-padded batch, as float32."""
        extra: dict[str, Any] = {"attention_mask": batch.attention_mask}
        if self._keeps_logits:
            extra["logits_to_keep"] = keep  # saves a [B, T, V] tensor on large vocabularies
        if self._takes_positions:
            extra["position_ids"] = batch.position_ids
        with self._prefill(batch, generating=False) as inputs:
            out = self.model(**inputs, **extra)
        return out.logits[:, -keep:].float()

    @staticmethod
    def _chunks(items: Sequence[Any], batch_size: int) -> list[Sequence[Any]]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise PromptError(f"batch_size must be a positive integer, not {batch_size!r}")
        return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    # ----------------------------------------------------------------------------------- public API
    def decide(self, prompts: Prompts, *, chat: bool = False) -> list[GuardDecision]:
        """The guard's decisions for ``prompts`` (targets, scores, tokens that would be corrupted)."""
        return [row.decision for row in self._rows(prompts, chat)]

    def prefill_inputs(self, prompts: Prompts, *, chat: bool = False, reserve_tokens: int = 0) -> PrefillInputs:
        """The left-padded prefill batch for ``prompts``, with corrupted embeddings for flagged rows.

        For running the prefill elsewhere (your own forward pass, an inference server that accepts
        prompt embeddings); ``reserve_tokens`` keeps room in the context for that many new tokens.
        """
        return self._batch(self._rows(prompts, chat, reserve_tokens))

    @torch.no_grad()
    def generate(
        self,
        prompts: Prompts,
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
        """Generate a completion per prompt: greedy when ``temperature`` is 0, else sampled with
        ``temperature`` and ``top_p`` only (no top-k).

        Prompts are strings or chat conversations (lists of ``{"role", "content"}``); ``chat=True``
        wraps plain strings in the chat template. Sampling draws from one random stream per call, seeded
        by ``seed`` (a fresh random seed when None), so a prompt's sample also depends on its batch.
        Extra keyword arguments go to ``model.generate``; the global random state is left untouched.
        """
        check_generation_args(max_new_tokens, temperature, top_p)
        rows = self._rows(prompts, chat, max_new_tokens)
        chunks = self._chunks(rows, batch_size)
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling.update(temperature=temperature, top_p=top_p, top_k=0)
            seed = int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else seed
        forked = [self.device] if self.device.type == "cuda" else []
        texts: list[str] = []
        with torch.random.fork_rng(devices=forked, enabled=temperature > 0):
            if temperature > 0:
                torch.manual_seed(seed)
            for chunk in chunks:
                batch = self._batch(chunk)
                with self._prefill(batch, generating=True) as inputs:
                    out = self.model.generate(
                        **inputs, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                        pad_token_id=self._pad_id, **sampling, **generate_kwargs,
                    )
                texts.extend(self.tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True))
        return self._with_decisions(texts, rows, return_decisions)

    @torch.no_grad()
    def score(
        self,
        prompts: Prompts,
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
        rows = self._rows(prompts, chat, [len(t) for t in tails])
        results: list[torch.Tensor] = []
        for chunk in self._chunks(list(zip(rows, tails)), batch_size):
            chunk_rows, chunk_tails = [r for r, _ in chunk], [t for _, t in chunk]
            keep = max(len(t) for t in chunk_tails) + 1
            logits = self._forward(self._batch(chunk_rows, chunk_tails), keep)
            for b, tail in enumerate(chunk_tails):
                # kept position keep-1 predicts the token after the last one; tail token j is predicted by
                # kept position keep-1-len(tail)+j
                predicting = logits[b, keep - 1 - len(tail) : keep - 1]
                logprobs = torch.log_softmax(predicting, dim=-1)
                results.append(logprobs.gather(-1, torch.tensor(tail, device=logprobs.device)[:, None])[:, 0].cpu())
        return self._with_decisions(results, rows, return_decisions)

    @torch.no_grad()
    def next_token_logits(
        self,
        prompts: Prompts,
        *,
        chat: bool = False,
        batch_size: int = 8,
        return_decisions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[GuardDecision]]:
        """Logits ``[B, V]`` (float32) of the token after each prompt."""
        rows = self._rows(prompts, chat)
        logits = torch.cat([self._forward(self._batch(chunk), 1)[:, -1].cpu() for chunk in self._chunks(rows, batch_size)])
        return self._with_decisions(logits, rows, return_decisions)

    @staticmethod
    def _with_decisions(result: Any, rows: list[_Row], return_decisions: bool) -> Any:
        return (result, [r.decision for r in rows]) if return_decisions else result
