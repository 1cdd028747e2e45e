"""Score several continuations of one prompt with a single prefill: the prompt's KV cache is computed once
(corrupted, if the guard flags it) and reused for each continuation.

TOFU's truth ratio scores a question's answer, its paraphrase and five perturbed answers: seven rows that
``GuardedModel.score`` prefills seven times over the same prompt. ``score_shared`` prefills the prompt
once per question and runs the continuations, right-padded and batched by length across the questions of a
prefill (so that little of a pass is padding), against copies of its cache. The values
equal ``GuardedModel.score``'s up to float rounding (other batch shapes, other summation order): the
prompt is planned, corrupted and positioned exactly as there, with the same per-prompt noise.
"""

from __future__ import annotations

import inspect
from copy import deepcopy
from typing import Sequence

import torch

from ..errors import PromptError
from .guarded import GuardedModel, Prompts
from .plan import Plan
from .prefill import ModelInputs
from ..validation import integer

__all__ = ["score_shared"]


@torch.no_grad()
def score_shared(
    model: GuardedModel,
    prompts: Prompts | Plan,
    continuations: Sequence[Sequence[str]],
    *,
    chat: bool = False,
    batch_size: int = 8,
) -> list[list[torch.Tensor]]:
    """Per-token log-probabilities of each of ``continuations[i]`` given prompt ``i`` (possibly corrupted),
    as ``GuardedModel.score`` returns them, with one prefill per prompt. ``batch_size``: the most prompts
    per prefill and the most continuations per forward pass, as in ``score``."""
    integer(batch_size, "batch_size", minimum=1, error=PromptError)
    tails = [[model.tokenizer(c, add_special_tokens=False)["input_ids"] for c in group] for group in continuations]
    for i, group in enumerate(tails):
        if not group or not all(group):
            raise PromptError(f"prompt {i} has no continuation, or an empty one; there is nothing to score")
    if isinstance(prompts, Plan):
        plan = prompts
    else:
        plan = model.plan(prompts, chat=chat, reserve=[max(len(t) for t in group) for group in tails])
    if len(plan) != len(tails):
        raise PromptError(f"got {len(plan)} prompts but {len(tails)} groups of continuations; give one group per prompt")
    inputs = ModelInputs.of(model.model)
    results: list[list[torch.Tensor]] = []
    for start in range(0, len(tails), batch_size):
        stop = start + batch_size
        results.extend(_score_chunk(model, inputs, Plan(plan.rows[start:stop], plan.seed), tails[start:stop], batch_size))
    return results


def _cache_argument(net: object) -> str:
    """The name ``forward`` takes the KV cache under (``cache`` in recent transformers)."""
    return "cache" if "cache" in inspect.signature(net.forward).parameters else "past_key_values"


def _score_chunk(
    model: GuardedModel, inputs: ModelInputs, chunk: Plan, tails: list[list[list[int]]], batch_size: int
) -> list[list[torch.Tensor]]:
    """One prefill of the chunk's prompts, then their continuations, longest first, ``batch_size`` rows
    per pass: rows of similar length share a pass, whichever prompt they follow, so little is padding."""
    net, device = model.model, model.device
    batch = model.prefill_inputs(chunk)
    with inputs.prefill(net, batch, generating=False) as tokens:
        extra = inputs.forward_kwargs(batch, 1)
        if _keeps_logits(net):
            extra["logits_to_keep"] = 1  # only the last prompt position's logits are read
        prefill = net(**tokens, **extra, use_cache=True)
    first = torch.log_softmax(prefill.logits[:, -1].float(), dim=-1)  # predicts each continuation's first token
    cache = getattr(prefill, "cache", None) or prefill.past_key_values
    rows = [(b, t) for b, group in enumerate(tails) for t in group]
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][1]))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.tokenizer.eos_token_id
    scored_rows: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    for begin in range(0, len(order), batch_size):
        picked = order[begin : begin + batch_size]
        owner = [rows[r][0] for r in picked]
        flat = [rows[r][1] for r in picked]
        index = torch.tensor(owner, device=device)
        copy = deepcopy(cache)
        copy.reorder_cache(index)  # one copy of its prompt's cache per continuation
        width = max(len(t) for t in flat)
        ids = torch.full((len(flat), width), pad, dtype=torch.long)
        tail_mask = torch.zeros((len(flat), width), dtype=torch.long)
        for r, t in enumerate(flat):  # right-padded: padding comes after every real token and is never read
            ids[r, : len(t)] = torch.tensor(t)
            tail_mask[r, : len(t)] = 1
        ids, tail_mask = ids.to(device), tail_mask.to(device)
        prompt_mask = batch.attention_mask[index]
        attention = torch.cat([prompt_mask, tail_mask], dim=-1)
        extra = {"position_ids": prompt_mask.sum(-1, keepdim=True) + torch.arange(width, device=device)[None]}
        if not inputs.takes_positions:
            extra = {}
        extra[_cache_argument(net)] = copy
        logits = net(input_ids=ids, attention_mask=attention, **extra).logits.float()  # position j predicts token j + 1
        normaliser = torch.logsumexp(logits, dim=-1)
        for j, (r, b, t) in enumerate(zip(picked, owner, flat)):
            target = torch.tensor(t, device=device)
            rest = logits[j, : len(t) - 1].gather(-1, target[1:, None])[:, 0] - normaliser[j, : len(t) - 1]
            scored_rows[r] = torch.cat([first[b, target[:1]], rest]).cpu()
    scored: list[list[torch.Tensor]] = [[] for _ in tails]
    for (b, _), values in zip(rows, scored_rows):
        scored[b].append(values)
    return scored


def _keeps_logits(net: object) -> bool:
    """Whether ``forward`` can compute the logits of the last positions only (``logits_to_keep``)."""
    return "logits_to_keep" in inspect.signature(net.forward).parameters
