"""The OpenAI-compatible HTTP API in front of a guarded model: ``create_app(backend)``.

Routes: ``/v1/completions`` and ``/v1/chat/completions`` (with ``stream: true`` as server-sent events),
``/v1/models``, ``/health`` (the guard's folder and targets only with the admin token),
``/v1/guard/classify`` (the targets a text triggers, with scores) and ``/v1/guard/reload`` (hot reload,
behind the admin token). No global state: everything hangs off the app.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import GuardError
from ..runtime.prompts import PromptInput
from . import openai_format as fmt
from .admission import AdmissionMiddleware, ClientWatch
from .audit import AUDITED_PATHS, AuditEntry, AuditLog, AuditMiddleware
from .backends import Backend, ClassifierRefused
from .bounds import check_counts, check_tokens, token_limit
from .errors import APIError, install_error_handlers
from .failclosed import classify
from .generation import END, MIN_TEMPERATURE, ChoiceResult, GenerationParams, Prepared
from .schemas import ChatRequest, ClassifyRequest, CompletionRequest, ReloadRequest, SamplingFields

__all__ = ["create_app"]

log = logging.getLogger("eco_unlearn.serve")

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def create_app(backend: Backend) -> FastAPI:
    """A FastAPI app serving ``backend``, configured by ``backend.config`` (the one ``ServeConfig``: fail
    closed, audit log, admin token, ...); run it with uvicorn. The audit log opens here and closes at shutdown."""
    config = backend.config
    audit_log = AuditLog(config.audit_log) if config.audit_log is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        loop = asyncio.get_running_loop()
        sighup = config.reload_on_sighup and hasattr(signal, "SIGHUP")
        if sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_on_signal()))
            except (RuntimeError, ValueError, NotImplementedError):
                log.warning("cannot install the SIGHUP handler here (not the main thread?); "
                            "reload over HTTP instead")
                sighup = False
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await backend.close()
            if audit_log is not None:
                audit_log.close()

    app = FastAPI(title="eco-unlearn", summary="OpenAI-compatible server with an ECO guard", lifespan=lifespan)
    app.state.backend, app.state.audit_log = backend, audit_log  # the config is backend.config
    install_error_handlers(app)
    app.add_middleware(AdmissionMiddleware, limit=config.max_body_bytes, timeout_s=config.body_timeout_s,
                       max_per_client=config.max_concurrent_per_client, paths=AUDITED_PATHS)
    app.add_middleware(AuditMiddleware, audit_log=audit_log, store_prompts=config.audit_prompts)

    async def _reload_on_signal() -> None:
        try:
            snapshot = await run_in_threadpool(backend.guards.reload)
            log.info("SIGHUP: guard %s reloaded from %s", snapshot.version, snapshot.path)
            record: dict[str, Any] = {"guard": snapshot.describe()}
        except GuardError as exc:
            log.error("SIGHUP: guard not reloaded, the previous one stays in force: %s", exc)
            record = {"error": str(exc), "guard": backend.guards.current.describe()}
        if audit_log is not None:
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            audit_log.write({"time": now, "event": "reload", "via": "SIGHUP", **record})

    def check_model(name: str | None) -> None:
        if name is not None and name != config.model_id:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {config.model_id!r}",
                           param="model", code="model_not_found")

    def is_admin(request: Request) -> bool:
        """Whether the request carries the admin token (never true when none is configured)."""
        if not config.admin_token:
            return False
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        return hmac.compare_digest(given.encode(), config.admin_token.encode())

    def require_admin(request: Request) -> None:
        if not config.admin_token:
            raise APIError(403, "reloading the guard over HTTP is disabled: start the server with --admin-token "
                           "(or send the server SIGHUP)", code="admin_disabled")
        if not is_admin(request):
            raise APIError(401, "this needs the admin token: send 'Authorization: Bearer <token>'",
                           code="invalid_admin_token")

    # ------------------------------------------------------------------------------------ routes
    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Public: status, backend, model and an opaque guard digest with the reload count. The guard's
        folder and target names (the forget scope) and the fail-closed policy only with the admin token."""
        snapshot = backend.guards.current
        if not is_admin(request):
            return {"status": "ok", "model": config.model_id, "backend": backend.kind, "guard": snapshot.public()}
        return {"status": "ok", "model": config.model_id, "backend": backend.kind, "guard": snapshot.describe(),
                "on_classifier_error": config.on_classifier_error}

    def model_card() -> dict[str, Any]:
        return {"id": config.model_id, "object": "model", "created": int(app.state.started),
                "owned_by": "eco-unlearn"}

    app.state.started = time.time()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        check_model(model_id)
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        check_model(body.model)
        check_counts(body.prompt, config, param="prompt")
        max_tokens = body.max_tokens if body.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
        return await generate(request, body, body.prompt, max_tokens, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        check_model(body.model)
        conversation = [m.as_dict() for m in body.messages]
        check_counts([conversation], config, param="messages")
        return await generate(request, body, [conversation], body.token_limit, chat=True)

    @app.post("/v1/guard/classify")
    async def guard_classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        check_model(body.model)
        check_counts(body.input, config, param="input")
        audit: AuditEntry = request.state.audit
        snapshot = backend.guards.current
        audit.extra.update(backend=backend.kind, guard=snapshot.version)
        classified = await run_in_threadpool(classify, snapshot.guard, body.input)
        if classified.failed:
            for text, failure in zip(body.input, classified.failures()):
                audit.add_prompt(text, **failure)
            raise ClassifierRefused(classified.failures())
        thresholds = {t.name: t.threshold for t in snapshot.guard.targets} if snapshot.guard else {}
        data = []
        for i, (text, decision) in enumerate(zip(body.input, classified.decisions)):
            audit.add_prompt(text, flagged=decision.flagged, targets=decision.targets, scores=decision.scores)
            data.append({"index": i, "flagged": decision.flagged, "targets": decision.targets,
                         "scores": decision.scores})
        return {"object": "list", "model": config.model_id, "guard": snapshot.describe(), "thresholds": thresholds,
                "data": data}

    @app.post("/v1/guard/reload")
    async def reload(request: Request, body: ReloadRequest | None = None) -> dict[str, Any]:
        require_admin(request)
        audit: AuditEntry = request.state.audit
        previous = backend.guards.current
        try:
            snapshot = await run_in_threadpool(backend.guards.reload, body.path if body else None)
        except GuardError as exc:
            raise APIError(400, f"guard not reloaded, the previous one stays in force: {exc}", param="path",
                           code="invalid_guard") from None
        audit.extra.update(event="reload", previous=previous.version, guard=snapshot.version, path=snapshot.path)
        log.info("guard %s reloaded from %s (was %s)", snapshot.version, snapshot.path, previous.version)
        return {"status": "reloaded", "previous": previous.describe(), "guard": snapshot.describe()}

    # ------------------------------------------------------------------------------- generation
    def prepare(prompts: Sequence[PromptInput], max_tokens: int | None, param: str) -> list[Prepared]:
        """The prompts' tokens against the limit, before rendering; then render, tokenize and check them."""
        limit, why = token_limit(config, backend.context, backend.truncation, max_tokens)
        check_tokens(prompts, backend.tokenizer, limit, param=param, why=why)
        return backend.prepare(prompts, max_tokens, param=param)

    async def generate(request: Request, body: SamplingFields, prompts: Sequence[PromptInput],
                       max_tokens: int | None, *, chat: bool) -> Any:
        audit: AuditEntry = request.state.audit
        watch: ClientWatch = request.state.client_watch
        snapshot = backend.guards.current  # this request keeps this guard to its end, whatever reloads happen
        audit.extra.update(model=config.model_id, backend=backend.kind, guard=snapshot.version, stream=body.stream)
        param = "messages" if chat else "prompt"
        prepared: list[Prepared] = await run_in_threadpool(prepare, prompts, max_tokens, param)
        remaining = audit.started + config.request_timeout_s - time.time()
        if remaining <= 0:
            audit.outcome = "deadline_exceeded"
            raise APIError(503, "the request did not finish within the server's deadline (request_timeout_s)",
                           code="deadline_exceeded")
        temperature = body.temperature if body.temperature >= MIN_TEMPERATURE else 0.0
        params = GenerationParams(temperature, body.top_p, body.seed, tuple(body.stop))
        rid = ("chatcmpl-" if chat else "cmpl-") + audit.request_id
        handle = await backend.submit(prepared, params, snapshot, owner=audit.client)

        def past_deadline() -> None:
            audit.outcome = audit.outcome or "deadline_exceeded"
            handle.cancel("deadline_exceeded")

        timer = asyncio.get_running_loop().call_later(remaining, past_deadline)
        watch.on_gone(handle.cancel)
        try:
            return await answer(handle, body, prepared, rid, chat, audit, timer)
        except BaseException:
            timer.cancel()
            raise

    async def answer(handle: Any, body: SamplingFields, prepared: list[Prepared], rid: str, chat: bool,
                     audit: AuditEntry, timer: asyncio.TimerHandle) -> Any:
        try:
            decisions, failures = await handle.decided
        except ClassifierRefused as exc:
            for p, failure in zip(prepared, exc.failures):
                audit.add_prompt(p.prompt, prompt_tokens=p.prompt_tokens, **failure)
            raise
        except asyncio.CancelledError:
            handle.cancel()
            raise
        entries = [
            audit.add_prompt(p.prompt, flagged=d.flagged, targets=d.targets, scores=d.scores,
                             prompt_tokens=p.prompt_tokens, **failure)
            for p, d, failure in zip(prepared, decisions, failures)
        ]
        if body.stream:
            events = stream_events(handle, rid, chat, body.include_usage, entries, audit, timer)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            results = await handle.done
        except asyncio.CancelledError:
            handle.cancel()
            raise
        finally:
            timer.cancel()
        record_results(entries, results)
        if handle.cancelled:  # the client left, or the deadline passed, before the answer was complete
            audit.extra["generated_at_cancel"] = handle.generated_at_cancel
            raise handle.cancel_error()
        build = fmt.chat_response if chat else fmt.completion_response
        return JSONResponse(build(rid, config.model_id, results))

    async def stream_events(handle: Any, rid: str, chat: bool, include_usage: bool,
                            entries: list[dict[str, Any]], audit: AuditEntry,
                            timer: asyncio.TimerHandle) -> AsyncIterator[str]:
        created, finished = int(time.time()), False
        model = config.model_id

        def chunk(index: int, text: str | None, finish: str | None = None) -> dict[str, Any]:
            if chat:
                return fmt.chat_chunk(rid, model, created, index, {} if text is None else {"content": text}, finish)
            return fmt.completion_chunk(rid, model, created, index, text or "", finish)

        try:
            if chat:
                yield fmt.sse(fmt.chat_chunk(rid, model, created, 0, {"role": "assistant", "content": ""}))
            while (item := await handle.deltas.get()) is not END:
                yield fmt.sse(chunk(*item))
            try:
                results: list[ChoiceResult] = await handle.done
            except APIError as exc:
                audit.fail(exc)
                yield fmt.sse(exc.body())
                yield fmt.sse("[DONE]")
                finished = True
                return
            record_results(entries, results)
            if handle.cancelled:  # past the deadline: say so instead of pretending the answer is whole
                audit.extra["generated_at_cancel"] = handle.generated_at_cancel
                error = handle.cancel_error()
                audit.fail(error)
                yield fmt.sse(error.body())
                yield fmt.sse("[DONE]")
                finished = True
                return
            for result in results:
                yield fmt.sse(chunk(result.index, None, result.finish_reason))
            if include_usage:
                obj = "chat.completion.chunk" if chat else "text_completion"
                yield fmt.sse(fmt.usage_chunk(rid, model, created, obj, results))
            yield fmt.sse("[DONE]")
            finished = True
        finally:
            timer.cancel()
            if not finished:  # the client left: stop its rows, and log what they generated until they stopped
                handle.cancel()
                audit.extra["aborted"] = "client disconnected"

                def stopped(results: list[ChoiceResult]) -> None:
                    record_results(entries, results)
                    audit.extra["generated_at_cancel"] = handle.generated_at_cancel

                audit.settle(handle.done, stopped)

    return app


def record_results(entries: list[dict[str, Any]], results: Sequence[ChoiceResult]) -> None:
    """Complete each prompt's audit entry with what generation did."""
    for entry, result in zip(entries, sorted(results, key=lambda r: r.index)):
        entry.update(corrupted_tokens=result.decision.corrupted_tokens, completion_tokens=result.completion_tokens,
                     finish_reason=result.finish_reason)
