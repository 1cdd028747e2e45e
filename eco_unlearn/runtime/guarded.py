"""GuardedModel: a frozen causal LM whose flagged prompts get corrupted input embeddings.

The corruption touches the prompt's input embeddings only, in the prefill pass only: generated tokens
are embedded normally by the model, and scored continuations are never corrupted. Batches with no
flagged prompt run the plain ``input_ids`` path, so unflagged traffic costs nothing extra.

Every call plans its batch first (``GuardedModel.plan``: render, classify, tokenize, fit the context,
mask); a caller that must inspect a batch before running it builds the ``Plan`` itself and passes it in.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal, Sequence

import torch

from .corruption import apply_corruption
from ..errors import PromptError
from .guard import Guard, GuardDecision
from ..models import ModelFingerprint, context_length, fingerprint
from .plan import EncodedPrompt, Plan, PlannedPrompt, encode_prompts, token_mask
from .prefill import ModelInputs, PrefillInputs
from .prompts import PromptInput
from ..validation import integer, number

__all__ = ["GuardedModel", "PrefillInputs", "TokenScores", "check_generation_args"]

Truncation = Literal["error", "left"]
Prompts = PromptInput | Sequence[PromptInput]


@dataclass(frozen=True)
class TokenScores:
    """A scored continuation: each token's log-probability and whether it was the model's greedy choice."""

    logprobs: torch.Tensor
    greedy: torch.Tensor


def check_generation_args(max_new_tokens: int, temperature: float, top_p: float) -> None:
    """Raise ``PromptError`` for generation settings no model can honour."""
    integer(max_new_tokens, "max_new_tokens", minimum=1, error=PromptError)
    number(temperature, "temperature", low=0, error=PromptError)
    number(top_p, "top_p", low=0, high=1, low_open=True, error=PromptError)


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
        self._inputs = ModelInputs.of(model)
        self.guard: Guard | None = None
        if guard is not None:
            self.attach(guard, force=force)

    def attach(self, guard: Guard | None, *, force: bool = False) -> None:
        """Use ``guard`` from now on (None removes it), after checking it was built for this model."""
        if guard is not None:
            guard.check_model(self.model, force=force, fingerprint=self.model_fingerprint)
        self.guard = guard

    @cached_property
    def model_fingerprint(self) -> ModelFingerprint:
        """The model's fingerprint, computed on first use and kept: attaching many guards hashes the
        embedding matrix once."""
        return fingerprint(self.model)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    # ------------------------------------------------------------------------------------ planning
    def encode(self, prompts: Prompts, *, chat: bool = False) -> list[EncodedPrompt]:
        """Render and tokenize ``prompts`` (no guard, no context check): what ``plan`` takes to skip both."""
        return encode_prompts(prompts, self.tokenizer, chat=chat)

    def plan(
        self,
        prompts: Prompts | Sequence[EncodedPrompt],
        *,
        chat: bool = False,
        reserve: int | Sequence[int] = 0,
        decisions: Sequence[GuardDecision] | None = None,
        seed: int | None = None,
        warn: bool = True,
    ) -> Plan:
        """Render, classify and tokenize ``prompts``, check them against the context (keeping ``reserve``
        tokens free per prompt, for new or scored tokens) and build each one's corruption mask.

        ``prompts`` may come from ``encode`` (or a plan's ``encoded``): they are not rendered or tokenized
        again. ``decisions`` (one per prompt) stand in for the guard's: their own selections and corruptions
        are applied, so a caller that classified the texts itself (the server, failing closed) plans them
        as decided. ``seed`` seeds the noise (default: the guard's, 0 without a guard). ``warn=False`` is
        for callers that handle a flagged prompt with an empty mask themselves.
        """
        encoded = list(prompts) if _is_encoded(prompts) else self.encode(prompts, chat=chat)
        reserves = [reserve] * len(encoded) if isinstance(reserve, int) else list(reserve)
        if len(reserves) != len(encoded):
            raise PromptError(f"got {len(encoded)} prompts but {len(reserves)} continuations; give one per prompt")
        if decisions is None and self.guard is not None:
            decisions = self.guard.decide([e.prompt.user_text for e in encoded])
        elif decisions is None:
            decisions = [GuardDecision(False, [], {}) for _ in encoded]
        elif len(decisions) != len(encoded):
            raise PromptError(f"got {len(encoded)} prompts but {len(decisions)} decisions; give one per prompt")
        if seed is None:
            seed = self.guard.seed if self.guard else 0
        seed = integer(seed, "seed", minimum=-(2**63), maximum=2**63 - 1, error=PromptError,
                       what="a 64-bit signed integer")
        rows = []
        for i, (item, decision, extra) in enumerate(zip(encoded, decisions, reserves)):
            ids, mask = self._fit_context(i, list(item.ids), token_mask(item, decision, self._special_ids), extra)
            if warn and decision.flagged and not any(mask):
                warnings.warn(
                    f"prompt {i} was flagged by {', '.join(decision.targets)} but its token selection picked no "
                    "token of the user's text, so it is answered uncorrupted",
                    stacklevel=3,
                )
            rows.append(PlannedPrompt(item, ids, mask, replace(decision, corrupted_tokens=sum(mask))))
        return Plan(rows, seed)

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

    def _planned(self, prompts: Prompts | Plan, chat: bool, reserve: int | Sequence[int] = 0) -> Plan:
        """``prompts`` planned, or the plan given, checked to leave ``reserve`` tokens free per prompt."""
        if not isinstance(prompts, Plan):
            return self.plan(prompts, chat=chat, reserve=reserve)
        reserves = [reserve] * len(prompts) if isinstance(reserve, int) else list(reserve)
        if len(reserves) != len(prompts):
            raise PromptError(f"got {len(prompts)} prompts but {len(reserves)} continuations; give one per prompt")
        if not prompts.rows:
            raise PromptError("the plan has no prompts; plan at least one")
        for i, (row, extra) in enumerate(zip(prompts.rows, reserves)):
            if self.max_length is not None and len(row.ids) + extra > self.max_length:
                raise PromptError(
                    f"prompt {i} of the plan has {len(row.ids)} tokens; with {extra} more tokens it exceeds the "
                    f"model's context of {self.max_length}. Plan it with reserve={extra}"
                )
        return prompts

    @staticmethod
    def _row_generator(ids: Sequence[int], seed: int) -> torch.Generator:
        """Noise seeded from the guard seed and the prompt tokens: same prompt, same corruption."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(int(seed).to_bytes(8, "little", signed=True))
        digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))

    def _batch(self, rows: Sequence[PlannedPrompt], seed: int,
               tails: Sequence[list[int]] | None = None) -> PrefillInputs:
        """Left-pad ``rows`` (each followed by its uncorrupted ``tail``, if given) into a batch, with
        corrupted input embeddings (noise seeded by ``seed``) if any row has tokens to corrupt."""
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
            generator = self._row_generator(row.ids, seed)
            corrupted = embeds[b : b + 1, prompt]
            for spec in row.decision.corruptions:
                corrupted = apply_corruption(spec, corrupted, mask, generator)
            embeds[b : b + 1, prompt] = corrupted
        return PrefillInputs(ids, attention, embeds, decisions)

    def _forward(self, batch: PrefillInputs, keep: int) -> torch.Tensor:
        """Logits of the last ``keep`` positions of a left-padded batch, as float32."""
        with self._inputs.prefill(self.model, batch, generating=False) as inputs:
            out = self.model(**inputs, **self._inputs.forward_kwargs(batch, keep))
        return out.logits[:, -keep:].float()

    @staticmethod
    def _chunks(items: Sequence[Any], batch_size: int) -> list[Sequence[Any]]:
        integer(batch_size, "batch_size", minimum=1, error=PromptError)
        return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    # ----------------------------------------------------------------------------------- public API
    # Each method below takes prompts (planned here, ``chat`` applying) or a ``Plan`` (run as planned).
    def decide(self, prompts: Prompts | Plan, *, chat: bool = False) -> list[GuardDecision]:
        """The guard's decisions for ``prompts`` (targets, scores, tokens that would be corrupted)."""
        return self._planned(prompts, chat).decisions

    def prefill_inputs(self, prompts: Prompts | Plan, *, chat: bool = False, reserve_tokens: int = 0) -> PrefillInputs:
        """The left-padded prefill batch for ``prompts``, with corrupted embeddings for flagged rows.

        For running the prefill elsewhere (your own forward pass, an inference server that accepts
        prompt embeddings); ``reserve_tokens`` keeps room in the context for that many new tokens.
        """
        plan = self._planned(prompts, chat, reserve_tokens)
        return self._batch(plan.rows, plan.seed)

    @torch.no_grad()
    def generate(
        self,
        prompts: Prompts | Plan,
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
        plan = self._planned(prompts, chat, max_new_tokens)
        chunks = self._chunks(plan.rows, batch_size)
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
                batch = self._batch(chunk, plan.seed)
                with self._inputs.prefill(self.model, batch, generating=True) as inputs:
                    out = self.model.generate(
                        **inputs, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
                        pad_token_id=self._pad_id, **sampling, **generate_kwargs,
                    )
                texts.extend(self.tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True))
        return self._with_decisions(texts, plan, return_decisions)

    @torch.no_grad()
    def score(
        self,
        prompts: Prompts | Plan,
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
        scored, decisions = self.score_ids(prompts, tails, chat=chat, batch_size=batch_size, return_decisions=True)
        logprobs = [s.logprobs for s in scored]
        return (logprobs, decisions) if return_decisions else logprobs

    @torch.no_grad()
    def score_ids(
        self,
        prompts: Prompts | Plan,
        continuations: Sequence[Sequence[int]],
        *,
        chat: bool = False,
        batch_size: int = 8,
        return_decisions: bool = False,
    ) -> list[TokenScores] | tuple[list[TokenScores], list[GuardDecision]]:
        """``score`` for continuations given as token ids (as an evaluation harness tokenizes them), with
        whether each token is the model's greedy choice. Continuation tokens are never corrupted."""
        tails = [list(t) for t in continuations]
        for i, tail in enumerate(tails):
            if not tail:
                raise PromptError(f"continuation {i} is empty; there is nothing to score")
        plan = self._planned(prompts, chat, [len(t) for t in tails])
        results: list[TokenScores] = []
        for chunk in self._chunks(list(zip(plan.rows, tails)), batch_size):
            chunk_rows, chunk_tails = [r for r, _ in chunk], [t for _, t in chunk]
            keep = max(len(t) for t in chunk_tails) + 1
            logits = self._forward(self._batch(chunk_rows, plan.seed, chunk_tails), keep)
            for b, tail in enumerate(chunk_tails):
                # kept position keep-1 predicts the token after the last one; tail token j is predicted by
                # kept position keep-1-len(tail)+j
                logprobs = torch.log_softmax(logits[b, keep - 1 - len(tail) : keep - 1], dim=-1)
                ids = torch.tensor(tail, device=logprobs.device)
                results.append(TokenScores(logprobs.gather(-1, ids[:, None])[:, 0].cpu(), (logprobs.argmax(-1) == ids).cpu()))
        return self._with_decisions(results, plan, return_decisions)

    @torch.no_grad()
    def next_token_logits(
        self,
        prompts: Prompts | Plan,
        *,
        chat: bool = False,
        batch_size: int = 8,
        return_decisions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[GuardDecision]]:
        """Logits ``[B, V]`` (float32) of the token after each prompt."""
        plan = self._planned(prompts, chat)
        chunks = self._chunks(plan.rows, batch_size)
        logits = torch.cat([self._forward(self._batch(chunk, plan.seed), 1)[:, -1].cpu() for chunk in chunks])
        return self._with_decisions(logits, plan, return_decisions)

    @staticmethod
    def _with_decisions(result: Any, plan: Plan, return_decisions: bool) -> Any:
        return (result, plan.decisions) if return_decisions else result


def _is_encoded(prompts: Any) -> bool:
    """Whether ``prompts`` are already rendered and tokenized (``GuardedModel.encode``)."""
    return isinstance(prompts, Sequence) and bool(prompts) and all(isinstance(p, EncodedPrompt) for p in prompts)
