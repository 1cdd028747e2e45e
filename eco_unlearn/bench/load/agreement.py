"""Greedy answers through the vLLM gateway against the local backend's, prompt by prompt.

Both servers get the same chat requests (greedy, one at a time) for a fixed set of 40 prompts: the first 20
questions of the demo's forget set that name one of its entities (so the keyword demo guard flags them) and
the first 20 of its retain set (hard negatives: other fantasy worlds, real wizards; not flagged). Where two answers differ, the local model says
why: at the first token where they part, the prompt (corrupted as the guard corrupts it) plus the common
prefix goes through the local model once, and the logit margin between its token and the engine's is
reported. A margin of a few hundredths of a nat is a near tie that float32 kernels of two engines may
break either way; a large one would be a real difference in what the engine computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch

from ...classifier.keyword import KeywordClassifier
from ...demo import DEMO_ENTITIES, demo_data
from ...runtime.guard import Guard
from ...runtime.guarded import GuardedModel
from ..saving import SavedReport

__all__ = ["AgreementReport", "AgreementRow", "agreement_prompts", "compare_answers", "divergence"]

NEAR_TIE_NATS = 0.1  # below this margin a greedy pick is at the mercy of the last bits of float32 arithmetic


def agreement_prompts(per_side: int = 20) -> list[str]:
    """The fixed comparison set: the first ``per_side`` forget questions naming a demo entity, then the first
    ``per_side`` retain ones."""
    data = demo_data()
    forget = [item.prompt for item in data.forget]
    named = KeywordClassifier(DEMO_ENTITIES).predict_proba(forget) >= 0.5
    return [p for p, hit in zip(forget, named) if hit][:per_side] + [item.prompt for item in data.retain[:per_side]]


@dataclass
class AgreementRow:
    prompt: str
    flagged: bool
    gateway: str
    local: str
    equal: bool
    first_difference: int | None = None  # index of the first differing answer token
    local_token: str | None = None
    gateway_token: str | None = None
    margin_nats: float | None = None  # local logit of its own token minus that of the engine's token there
    explanation: str = ""


@dataclass
class AgreementReport(SavedReport):
    benchmark: ClassVar[str | None] = "serve-vllm-agreement"

    max_tokens: int
    equal: int
    total: int
    equal_rate: float
    unexplained: int
    rows: list[AgreementRow] = field(default_factory=list)


@torch.no_grad()
def divergence(guarded: GuardedModel, prompt: str, local: str, gateway: str) -> tuple[int, str, str, float] | None:
    """Where two answers to ``prompt`` (a user message) part: ``(token index, local token, engine token,
    margin in nats)`` from one forward pass of the local guarded model, or None when their tokens agree."""
    tokenizer = guarded.tokenizer
    ours = tokenizer(local, add_special_tokens=False)["input_ids"]
    theirs = tokenizer(gateway, add_special_tokens=False)["input_ids"]
    k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    if k == len(ours) == len(theirs):
        return None
    eos = tokenizer.eos_token_id
    mine = ours[k] if k < len(ours) else eos  # an answer that ended here chose end-of-sequence
    other = theirs[k] if k < len(theirs) else eos
    batch = guarded.prefill_inputs([[{"role": "user", "content": prompt}]], chat=True)
    embed = guarded.model.get_input_embeddings()
    prompt_embeds = batch.inputs_embeds if batch.inputs_embeds is not None else embed(batch.input_ids)
    prefix = torch.tensor([ours[:k]], dtype=torch.long, device=batch.input_ids.device)
    embeds = torch.cat([prompt_embeds, embed(prefix)], dim=1)
    logits = guarded.model(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1].float()
    decode = tokenizer.decode
    return k, decode([mine]), decode([other]), float(logits[mine] - logits[other])


def _chat(http: Any, url: str, model_id: str, prompt: str, max_tokens: int) -> str:
    body = {"model": model_id, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0}
    response = http.post(url + "/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def compare_answers(gateway_url: str, local_url: str, model: Any, tokenizer: Any, guard: Guard | None, *,
                    prompts: Sequence[str] | None = None, model_id: str = "smollm2", max_tokens: int = 24,
                    timeout: float = 600.0) -> AgreementReport:
    """Ask both servers (serving ``model_id``) every prompt, greedy, and compare the answers; differences
    are explained with the local ``model`` guarded by ``guard`` (the guard both servers run)."""
    import httpx

    prompts = list(agreement_prompts() if prompts is None else prompts)
    guarded = GuardedModel(model, tokenizer, guard)
    flags = [d.flagged for d in guarded.decide([[{"role": "user", "content": p}] for p in prompts], chat=True)]
    rows = []
    with httpx.Client(timeout=timeout) as http:
        for prompt, flagged in zip(prompts, flags):
            theirs = _chat(http, gateway_url, model_id, prompt, max_tokens)
            ours = _chat(http, local_url, model_id, prompt, max_tokens)
            row = AgreementRow(prompt, flagged, theirs, ours, theirs == ours)
            found = None if row.equal else divergence(guarded, prompt, ours, theirs)
            if found is None:
                row.explanation = "equal" if row.equal else "same tokens, different text (detokenization)"
            else:
                row.first_difference, row.local_token, row.gateway_token, row.margin_nats = found
                near = abs(row.margin_nats) < NEAR_TIE_NATS
                row.explanation = (f"near tie at answer token {row.first_difference}: the local model prefers "
                                   f"{row.local_token!r} over {row.gateway_token!r} by {row.margin_nats:.4f} nats"
                                   if near else f"UNEXPLAINED: margin {row.margin_nats:.3f} nats at token "
                                   f"{row.first_difference}")
            rows.append(row)
    equal = sum(r.equal for r in rows)
    unexplained = sum(r.explanation.startswith("UNEXPLAINED") for r in rows)
    return AgreementReport(max_tokens, equal, len(rows), equal / len(rows), unexplained, rows)
