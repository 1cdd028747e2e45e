"""The ``eco`` model of lm-evaluation-harness: its Hugging Face model (``hf``) behind an ECO guard.

    lm_eval --model eco --model_args pretrained=PATH_OR_NAME,guard=GUARD_DIR --tasks ...
    simple_evaluate(model="eco", model_args="pretrained=...,guard=...", tasks=[...])

Like lm-eval's steered model, it subclasses ``HFLM`` and changes only what the model computes. Every
request's context is classified by the guard (once per distinct context, so all choices of a question
share one decision and one corruption). Requests the guard leaves unflagged go to ``HFLM``'s own code,
unchanged, so a guard that flags nothing gives exactly ``hf``'s numbers; flagged requests run on
``GuardedModel`` with lm-eval's own tokens: the context's embeddings corrupted at the prefill pass, the
continuation never. Rolling log-likelihoods (perplexity) have no prompt to corrupt and run unguarded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..extras import require

require("lm_eval", "lmeval", "the lm-evaluation-harness model")

from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text  # noqa: E402

from ..errors import PromptError  # noqa: E402
from ..models import EMBEDDED_MODELS, resolve_embedded  # noqa: E402
from ..runtime.guard import Guard, GuardDecision  # noqa: E402
from ..runtime.guarded import GuardedModel  # noqa: E402
from ..runtime.plan import EncodedPrompt  # noqa: E402
from ..runtime.prompts import RenderedPrompt  # noqa: E402

__all__ = ["EcoLM"]

Request = tuple[Any, list[int], list[int]]  # ((context, continuation) or None, context ids, continuation ids)


@register_model("eco")
class EcoLM(HFLM):
    """``HFLM`` with an ECO guard. ``guard`` is a guard folder or a ``Guard`` (None: no guard, exactly
    ``hf``); ``force_guard`` attaches a guard built for other weights. ``pretrained`` also takes
    eco-unlearn's embedded model names (``gemma3-270m``, ``smollm2``)."""

    def __init__(
        self, pretrained: Any, guard: str | Path | Guard | None = None, force_guard: bool = False,
        guard_batch_size: int = 8, **kwargs: Any,
    ) -> None:
        if isinstance(pretrained, str) and pretrained in EMBEDDED_MODELS:
            pretrained = str(resolve_embedded(pretrained))
        super().__init__(pretrained=pretrained, **kwargs)
        loaded = Guard.load(guard) if isinstance(guard, (str, Path)) else guard
        self.guarded = GuardedModel(self.model, self.tokenizer, loaded, force=bool(force_guard),
                                    truncation="left", max_length=self.max_length)
        self.guard_batch_size = int(guard_batch_size)

    # ------------------------------------------------------------------------------------- deciding
    def _decide(self, contexts: Sequence[str | None]) -> list[GuardDecision | None]:
        """The guard's decision per context (None: no context, nothing to decide), each distinct text once."""
        unique = list(dict.fromkeys(c for c in contexts if c))
        decided = dict(zip(unique, self.guarded.guard.decide(unique))) if unique else {}
        return [decided.get(c) if c else None for c in contexts]

    def _encoded(self, text: str, ids: list[int]) -> EncodedPrompt:
        """``text`` as lm-eval tokenized it (``ids``, perhaps with a leading BOS), with character offsets
        for token selection."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        own = list(enc["input_ids"])
        lead = len(ids) - len(own)
        if lead < 0 or ids[lead:] != own:
            raise PromptError(f"lm-eval's tokens of the context {text[:60]!r}... do not match the tokenizer's own")
        offsets = ((0, 0),) * lead + tuple(tuple(o) for o in enc["offset_mapping"])
        return EncodedPrompt(RenderedPrompt(text, text, ((0, len(text)),), templated=False), tuple(ids), offsets)

    # ------------------------------------------------------------------------------ log-likelihood
    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[tuple[float, bool]]:
        if self.guarded.guard is None:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        decisions = self._decide([req[0][0] if req[0] is not None else None for req in requests])
        flagged = [i for i, d in enumerate(decisions) if d is not None and d.flagged]
        if not flagged:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        plain = [i for i, d in enumerate(decisions) if d is None or not d.flagged]
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        if plain:
            done = super()._loglikelihood_tokens([requests[i] for i in plain], disable_tqdm=disable_tqdm,
                                                 override_bs=override_bs)
            for i, result in zip(plain, done):
                results[i] = result
        for i, result in zip(flagged, self._guarded_loglikelihood([requests[i] for i in flagged],
                                                                  [decisions[i] for i in flagged])):
            results[i] = result
        return results  # type: ignore[return-value]  # every slot is filled

    def _guarded_loglikelihood(self, requests: list[Request], decisions: list[GuardDecision]) -> list[tuple[float, bool]]:
        """Flagged requests on the guarded model. A context whose continuations are all one token runs once
        (its next-token distribution scores them all); the others are scored request by request."""
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, _cont) in enumerate(requests):
            by_context.setdefault(tuple(ctx), []).append(i)
        single = [c for c, members in by_context.items() if all(len(requests[i][2]) == 1 for i in members)]
        results: list[tuple[float, bool] | None] = [None] * len(requests)

        def encoded(i: int) -> EncodedPrompt:
            # lm-eval moves the context's trailing whitespace to the continuation before tokenizing
            return self._encoded(requests[i][0][0].rstrip() or requests[i][0][0], requests[i][1])

        if single:
            firsts = [by_context[c][0] for c in single]
            plan = self.guarded.plan([encoded(i) for i in firsts], decisions=[decisions[i] for i in firsts], reserve=1)
            logprobs = torch.log_softmax(self.guarded.next_token_logits(plan, batch_size=self.guard_batch_size), dim=-1)
            for row, context in enumerate(single):
                for i in by_context[context]:
                    token = requests[i][2][0]
                    results[i] = (float(logprobs[row, token]), bool(int(logprobs[row].argmax()) == token))
        single_set = set(single)
        rest = [i for c, members in by_context.items() if c not in single_set for i in members]
        if rest:
            plan = self.guarded.plan([encoded(i) for i in rest], decisions=[decisions[i] for i in rest],
                                     reserve=[len(requests[i][2]) for i in rest])
            scored = self.guarded.score_ids(plan, [requests[i][2] for i in rest], batch_size=self.guard_batch_size)
            for i, s in zip(rest, scored):
                results[i] = (float(s.logprobs.sum()), bool(s.greedy.all()))
        return results  # type: ignore[return-value]  # every slot is filled

    # ---------------------------------------------------------------------------------- generation
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        if self.guarded.guard is None:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        decisions = self._decide([req.args[0] for req in requests])
        flagged = [i for i, d in enumerate(decisions) if d is not None and d.flagged]
        plain = [i for i in range(len(requests)) if i not in set(flagged)]
        results: list[str | None] = [None] * len(requests)
        if plain:
            for i, text in zip(plain, super().generate_until([requests[i] for i in plain], disable_tqdm=disable_tqdm)):
                results[i] = text
        for i in flagged:
            results[i] = self._guarded_generate(requests[i].args[0], requests[i].args[1], decisions[i])
        return results  # type: ignore[return-value]  # every slot is filled

    def _guarded_generate(self, context: str, gen_kwargs: dict[str, Any], decision: GuardDecision) -> str:
        """One flagged generation: the prompt corrupted at prefill, greedy or sampled as lm-eval asks, cut at
        the first stop sequence as ``HFLM`` cuts it."""
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=self.tok_decode(self.eot_token_id, skip_special_tokens=False))
        max_new = int(kwargs.pop("max_gen_toks"))
        sample = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature", 0.0)) > 0
        plan = self.guarded.plan([self._encoded(context, self.tok_encode(context))], decisions=[decision], reserve=max_new)
        text = self.guarded.generate(
            plan, max_new_tokens=max_new, temperature=float(kwargs.get("temperature", 0.0)) if sample else 0.0,
            top_p=float(kwargs.get("top_p", 1.0)), seed=self.guarded.guard.seed, batch_size=1,
        )[0]
        return postprocess_generated_text(generation=text, stop=until, think_end_token=None)
