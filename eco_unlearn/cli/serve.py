"""``eco-unlearn serve``: the guarded model behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .console import err, errors, guard_path


class ClassifierErrorChoice(str, Enum):
    refuse = "refuse"
    corrupt = "corrupt"


class BackendChoice(str, Enum):
    local = "local"
    vllm = "vllm"


def serve(
    model: str = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id (vllm backend: a local folder)."),
    guard: Optional[str] = typer.Option(None, "--guard", "-g", help="Guard folder, or 'demo'; without one the model is served unguarded."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="The model id clients send (default: --model)."),
    audit_log: Path = typer.Option(Path("audit.jsonl"), "--audit-log", help="JSON Lines audit log, one line per request."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Write no audit log."),
    audit_prompts: bool = typer.Option(False, "--audit-prompts", help="Store prompt texts in the audit log (default: SHA-256 only)."),
    on_classifier_error: ClassifierErrorChoice = typer.Option("refuse", "--on-classifier-error", help="When the classifier fails: refuse (503) or corrupt every prompt token."),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="ECO_UNLEARN_ADMIN_TOKEN", help="Enables POST /v1/guard/reload for this bearer token."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most prompts in one generate call (1: no batching)."),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", min=0.0, help="How long a batch waits for company."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Larger request bodies get 413."),
    default_max_tokens: int = typer.Option(256, "--default-max-tokens", min=1, help="Chat completions without max_tokens."),
    max_messages: int = typer.Option(512, "--max-messages", min=1, envvar="ECO_UNLEARN_MAX_MESSAGES", help="Most messages in one chat (400 beyond)."),
    max_prompts: int = typer.Option(64, "--max-prompts", min=1, envvar="ECO_UNLEARN_MAX_PROMPTS", help="Most prompts in one completions request."),
    max_prompt_chars: int = typer.Option(262_144, "--max-prompt-chars", min=1, envvar="ECO_UNLEARN_MAX_PROMPT_CHARS", help="Most characters of content in one prompt, checked before rendering."),
    max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens", min=1, envvar="ECO_UNLEARN_MAX_PROMPT_TOKENS", help="Most tokens in one prompt's content, checked before rendering (default: the model's context)."),
    max_concurrent_per_client: int = typer.Option(8, "--max-concurrent-per-client", min=1, envvar="ECO_UNLEARN_MAX_CONCURRENT_PER_CLIENT", help="Requests in flight per client address (429 beyond)."),
    max_queue: int = typer.Option(64, "--max-queue", min=1, envvar="ECO_UNLEARN_MAX_QUEUE", help="Requests waiting for the model (429 with Retry-After beyond)."),
    body_timeout_s: float = typer.Option(10.0, "--body-timeout", min=0.001, envvar="ECO_UNLEARN_BODY_TIMEOUT", help="Seconds for a request body to arrive (408 after)."),
    request_timeout_s: float = typer.Option(120.0, "--request-timeout", min=0.001, envvar="ECO_UNLEARN_REQUEST_TIMEOUT", help="Seconds a request may take from arrival to its last token (503 after)."),
    backend: BackendChoice = typer.Option("local", "--backend", help="local: run the model here; vllm: guard in front of a vLLM server."),
    vllm_url: Optional[str] = typer.Option(None, "--vllm-url", help="vllm backend: the vLLM server (started with --enable-prompt-embeds)."),
    vllm_model: Optional[str] = typer.Option(None, "--vllm-model", help="vllm backend: the model name vLLM serves (default: the served name)."),
    truncation: opt.Truncation = typer.Option("error", help="Over-long prompts: 'error' refuses (400), 'left' drops the oldest tokens."),
    force: bool = opt.FORCE,
    dtype: str = opt.DTYPE,
    device: str = opt.DEVICE,
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the guarded model over an OpenAI-compatible HTTP API (SIGHUP reloads the guard folder)."""
    import logging

    with errors():
        from ..serve import ServeConfig, build_backend, create_app
        from ..serve.server import serve as run_server

        backend = BackendChoice(backend)
        folder = guard_path(guard, model)
        config = ServeConfig(
            model_id=served_model_name or model, guard_path=None if folder is None else str(folder),
            audit_log=None if no_audit else audit_log, audit_prompts=audit_prompts,
            on_classifier_error=ClassifierErrorChoice(on_classifier_error).value, admin_token=admin_token,
            reload_on_sighup=True, max_body_bytes=max_body_bytes, default_max_tokens=default_max_tokens,
            max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_messages=max_messages, max_prompts=max_prompts,
            max_prompt_chars=max_prompt_chars, max_prompt_tokens=max_prompt_tokens,
            max_concurrent_per_client=max_concurrent_per_client, max_queue=max_queue, body_timeout_s=body_timeout_s,
            request_timeout_s=request_timeout_s,
        )
        with err.status(f"Loading {model} ({backend.value} backend)"):  # the guard first: a broken one fails fast
            served = build_backend(model, config, backend=backend.value, vllm_url=vllm_url, vllm_model=vllm_model,
                                   force=force, truncation=opt.Truncation(truncation).value, dtype=dtype, device=device)
        application = create_app(served)
        if folder is None:
            err.print("[yellow]warning:[/] no --guard: the model is served unguarded")
        audit = "no audit log" if config.audit_log is None else f"audit log {config.audit_log}"
        err.print(f"serving {config.model_id!r} at http://{host}:{port}/v1 ({backend.value} backend, "
                  f"guard {folder or 'none'}, {audit})", soft_wrap=True, highlight=False)
    logging.getLogger("eco_unlearn").setLevel(logging.INFO)
    logging.basicConfig(format="%(levelname)s:     %(message)s")
    run_server(application, host, port, log_level=log_level)
