"""Backends: what turns a checked request into text. ``LocalBackend`` runs a ``GuardedModel`` in this
process, batching concurrent requests; ``VLLMGateway`` (``gateway.py``) relays to a vLLM server.

Both render and classify prompts the same way, fail closed the same way, and answer through a
``GenerationHandle``, so the HTTP layer does not know which one it talks to.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from transformers import StoppingCriteriaList

from ..errors import PromptError, ServeConfigError
from ..runtime.guard import Guard
from ..runtime.guarded import GuardedModel
from ..runtime.plan import Plan, PlannedPrompt
from ..runtime.prompts import PromptInput
from .batcher import Job, MicroBatcher
from .config import ServeConfig
from .errors import APIError
from .failclosed import classify, plan_failing_closed
from .generation import ChoiceResult, GenerationHandle, GenerationParams, Prepared, RowCollector
from .reload import GuardHolder, GuardSnapshot

__all__ = ["Backend", "ClassifierRefused", "LocalBackend", "build_backend", "internal_error", "prepare_prompts"]

log = logging.getLogger("eco_unlearn.serve")

RESTART_STEPS = 4  # a greedy batch whose row is cancelled within this many steps runs again without it


class ClassifierRefused(APIError):
    """503: the guard could not judge a prompt of this request (its classifier failed, or a flagged prompt's
    token selection picked no token), and the policy is to refuse. The client gets the same answer either
    way; ``failures`` (per prompt, the audit fields saying why) go to the audit log only."""

    def __init__(self, failures: Sequence[dict[str, str]]) -> None:
        super().__init__(
            503,
            "the guard could not classify this request, so it is refused (the server fails closed); try again later",
            code="classifier_unavailable",
        )
        self.failures = [dict(f) for f in failures]


def internal_error(exc: BaseException) -> APIError:
    """An unexpected failure while generating, as the 500 its request is answered with."""
    if isinstance(exc, APIError):
        return exc
    return APIError(500, f"generation failed ({type(exc).__name__}: {exc})"[:1000], type="server_error")


class Backend(Protocol):
    kind: str
    model: Any
    tokenizer: Any
    guards: GuardHolder
    config: ServeConfig
    context: int | None  # the model's context in tokens (None: unbounded)
    truncation: str  # "error": over-long prompts are refused; "left": truncated

    def prepare(self, prompts: Sequence[PromptInput], max_tokens: int | None, *, param: str) -> list[Prepared]: ...

    async def submit(self, prepared: list[Prepared], params: GenerationParams,
                     snapshot: GuardSnapshot, *, owner: str | None = None) -> GenerationHandle: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def prepare_prompts(
    guarded: GuardedModel,
    prompts: Sequence[PromptInput],
    max_tokens: int | None,
    *,
    default_max_tokens: int,
    param: str = "prompt",
) -> list[Prepared]:
    """Render and tokenize prompts (once: generation plans from these tokens), and check them and
    ``max_tokens`` against the context of ``guarded`` (its ``max_length``; with its ``truncation="left"``
    a long prompt is truncated later instead of refused).

    ``max_tokens`` None means the client gave no limit: each prompt gets ``default_max_tokens``, or what
    is left of the context if that is less. Problems raise ``APIError`` 400 naming ``param``.
    """
    context = guarded.max_length
    if context is not None and max_tokens is not None and max_tokens >= context:
        raise APIError(400, f"max_tokens={max_tokens} does not fit the model's context of {context} tokens",
                       param="max_tokens", code="invalid_value")
    try:
        encoded = guarded.encode(list(prompts), chat=False)
    except PromptError as exc:
        raise APIError(400, str(exc), param=param, code="invalid_prompt") from None
    prepared = []
    for i, (prompt, item) in enumerate(zip(prompts, encoded)):
        n = len(item.ids)
        limit = max_tokens
        if limit is None:
            limit = default_max_tokens if context is None else max(1, min(default_max_tokens, context - n))
        if context is not None and n + limit > context and guarded.truncation == "error":
            where = f"{param} {i}" if len(prompts) > 1 else f"the {param}"
            raise APIError(400, f"{where} has {n} tokens; with max_tokens={limit} it exceeds the model's context of "
                           f"{context} tokens. Shorten it or lower max_tokens", param=param,
                           code="context_length_exceeded")
        prepared.append(Prepared(prompt, item, limit))
    return prepared


@dataclass(eq=False)
class LocalRequest:
    """What a ``LocalBackend`` job carries: one request's prompts, its settings, the guard snapshot it
    arrived with and the handle that answers it."""

    prepared: list[Prepared]
    params: GenerationParams
    snapshot: GuardSnapshot
    handle: GenerationHandle


class LocalBackend:
    """A ``GuardedModel`` in this process: one worker thread, concurrent requests micro-batched.

    ``config`` is the server's one configuration: ``create_app`` takes it from here.
    """

    kind = "local"

    def __init__(self, model: Any, tokenizer: Any, guard: Guard | None, config: ServeConfig, *,
                 force: bool = False, truncation: str = "error") -> None:
        self.model, self.tokenizer, self.config, self.truncation = model, tokenizer, config, truncation
        self.guards = GuardHolder(model, guard, config.guard_path, force=force)
        # Unguarded: each batch is planned with its snapshot's decisions and seed (plan_failing_closed).
        self._guarded = GuardedModel(model, tokenizer, truncation=truncation)
        self.context = self._guarded.max_length
        eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        eos_token = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        self.eos_ids = sorted(set(eos) | eos_token)
        self.batcher = MicroBatcher(self._run, max_rows=config.max_batch, wait_s=config.batch_wait_ms / 1000)
        tokenizer("warm up")  # settle the tokenizer's padding/truncation state before threads share it

    def prepare(self, prompts: Sequence[PromptInput], max_tokens: int | None, *,
                param: str = "prompt") -> list[Prepared]:
        return prepare_prompts(self._guarded, prompts, max_tokens, param=param,
                               default_max_tokens=self.config.default_max_tokens)

    async def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    async def submit(self, prepared: list[Prepared], params: GenerationParams,
                     snapshot: GuardSnapshot, *, owner: str | None = None) -> GenerationHandle:
        """Queue the request for the worker (``owner``, its client address, gets a fair share of each batch);
        429 with ``Retry-After`` when ``max_queue`` requests already wait."""
        queued = self.batcher.queued
        if queued >= self.config.max_queue:
            wait = max(1, math.ceil(self.batcher.last_batch_s * (queued / self.config.max_batch + 1)))
            raise APIError(429, f"the server is busy: {queued} requests are waiting for the model (max_queue); "
                           f"retry in {wait} s", code="server_busy", headers={"Retry-After": str(wait)})
        handle = GenerationHandle(asyncio.get_running_loop())
        key = None if params.batch_key() is None else (params.batch_key(), snapshot.generation)
        request = LocalRequest(prepared, params, snapshot, handle)
        job = Job(key, len(prepared), request, lambda: handle.cancelled, new_tokens=max(p.max_tokens for p in prepared),
                  room=self._room(prepared), fail=lambda exc: handle.fail(internal_error(exc)), dropped=handle.drop,
                  owner=owner)
        handle.on_cancel = lambda: self.batcher.discard(job)
        self.batcher.submit(job)
        return handle

    def _room(self, prepared: list[Prepared]) -> float:
        """The most new tokens these prompts can share a ``generate`` call with and stay whole: what the
        context leaves them (a prompt that is truncated anyway only with its own ``max_tokens``)."""
        if self.context is None:
            return math.inf
        return min(max(p.max_tokens, self.context - p.prompt_tokens) for p in prepared)

    # ------------------------------------------------------------------------------ worker thread
    def _run(self, jobs: list[Job[LocalRequest]]) -> None:
        """Classify every prompt of the batch, plan it from the tokens ``prepare`` made, refuse or fail-close
        what the guard could not judge (the classifier failed, or a flagged prompt's token selection picked
        nothing), and generate the rest in one call. Anything that raises here fails the whole batch: the
        batcher answers each job with a 500."""
        requests = [job.payload for job in jobs]
        snapshot = requests[0].snapshot
        prepared = [p for request in requests for p in request.prepared]
        classified = classify(snapshot.guard, [p.user_text for p in prepared])
        plan, classified = plan_failing_closed(self._guarded, snapshot.guard, [p.encoded for p in prepared],
                                               [p.max_tokens for p in prepared], classified)
        failures = classified.failures()
        live: list[_Live] = []
        offset = 0
        for request in requests:
            part = slice(offset, offset + len(request.prepared))
            offset += len(request.prepared)
            if any(failures[part]) and self.config.on_classifier_error == "refuse":
                request.handle.fail(ClassifierRefused(failures[part]))
                continue
            request.handle.set_decided(classified.decisions[part], failures[part])
            live.extend(_Live(request, i, p, row) for i, (p, row) in enumerate(zip(request.prepared, plan.rows[part])))
        if not live:
            return
        try:
            self._generate(live, Plan([item.row for item in live], plan.seed), requests[0].params)
        except Exception as exc:
            log.exception("generation failed")
            for request in dict.fromkeys(item.request for item in live):
                request.handle.fail(internal_error(exc))

    def _generate(self, live: list["_Live"], plan: Plan, params: GenerationParams) -> None:
        """Generate the batch; each request is answered as soon as its own rows end (the batch goes on), and a
        cancelled row ends at the next token."""
        rows: list[Any] = []
        left = {item.request: 0 for item in live}
        for item in live:
            left[item.request] += 1
        results: dict[LocalRequest, list[ChoiceResult]] = {request: [] for request in left}

        def closed(item: _Live, position: int) -> None:
            row = rows[position]
            finish = row.finish if row.finish in ("stop", "length", "cancelled") else "stop"
            results[item.request].append(ChoiceResult(
                item.index, row.text, finish, item.prepared.prompt_tokens, len(row.ids), item.row.decision,
            ))
            left[item.request] -= 1
            if not left[item.request]:
                item.request.handle.finish(sorted(results[item.request], key=lambda r: r.index))

        def counted(handle: GenerationHandle) -> None:
            handle.generated += 1

        for position, item in enumerate(live):
            handle = item.request.handle
            rows.append(RowCollector.row(
                item.prepared.max_tokens, item.request.params.stop,
                emit=lambda text, h=handle, i=item.index: h.emit(i, text), cancelled=lambda h=handle: h.cancelled,
                on_close=lambda item=item, position=position: closed(item, position),
                on_token=lambda h=handle: counted(h),
            ))
        # A greedy batch whose row is cancelled in its first steps runs again without it (greedy rows do not
        # depend on their batch-mates), rather than computing the dead row, padded, to the end.
        restart = RESTART_STEPS if params.temperature == 0 else 0
        positions = list(range(len(live)))
        while True:
            collector = RowCollector(self.tokenizer, self.eos_ids, [rows[p] for p in positions], restart_within=restart)
            self._guarded.generate(
                Plan([live[p].row for p in positions], plan.seed), temperature=params.temperature,
                max_new_tokens=max(live[p].prepared.max_tokens for p in positions), top_p=params.top_p,
                seed=params.seed, batch_size=len(positions), stopping_criteria=StoppingCriteriaList([collector]),
            )
            if not collector.restart:
                break
            positions = [p for p in positions if rows[p].finish is None]
        collector.finalize()


@dataclass
class _Live:
    """A prompt of the batch that the classifier judged (or that fails closed) and will be generated."""

    request: LocalRequest
    index: int
    prepared: Prepared
    row: PlannedPrompt


def build_backend(model: str, config: ServeConfig, *, backend: str = "local", vllm_url: str | None = None,
                  vllm_model: str | None = None, force: bool = False, truncation: str = "error",
                  dtype: str = "float32", device: str = "cpu") -> Backend:
    """Load the guard folder ``config.guard_path`` (None: serve unguarded), then ``model``, behind a backend.

    ``backend="local"`` runs the model in this process (``load_model``: an embedded default, a local folder or
    a hub id) as a ``LocalBackend``; ``"vllm"`` loads only the tokenizer and the embedding layer of a local
    model folder and relays generation to the vLLM server at ``vllm_url`` (serving ``vllm_model``, default
    ``config.model_id``) as a ``VLLMGateway``. The guard loads first, so a broken one fails before the model.
    """
    if backend not in ("local", "vllm"):
        raise ServeConfigError(f"unknown backend {backend!r}; choose 'local' or 'vllm'")
    if backend == "vllm" and not vllm_url:
        raise ServeConfigError("the vllm backend needs vllm_url (--vllm-url), the vLLM server's address, "
                              "e.g. http://127.0.0.1:8001")
    if backend == "vllm" and truncation != "error":
        raise ServeConfigError(f"truncation={truncation!r} (--truncation) is not supported by the vllm backend")
    guard = Guard.load(config.guard_path) if config.guard_path is not None else None
    if backend == "local":
        from ..models import load_model

        lm, tokenizer = load_model(model, dtype=dtype, device=device)
        return LocalBackend(lm, tokenizer, guard, config, force=force, truncation=truncation)
    from .embedding import load_embedding_only
    from .gateway import VLLMGateway

    embedder, tokenizer = load_embedding_only(model, dtype=dtype)
    return VLLMGateway(embedder, tokenizer, guard, config, url=vllm_url, upstream_model=vllm_model, force=force)
