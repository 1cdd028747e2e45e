"""Settings of the OpenAI-compatible server, in one dataclass the CLI fills and tests build directly.

The backend holds it (``LocalBackend(..., config)``, ``build_backend(model, config)``) and ``create_app``
reads it from there, so the whole server follows one configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ServeConfigError
from ..validation import integer, number, one_of

__all__ = ["ClassifierErrorPolicy", "ServeConfig"]

ClassifierErrorPolicy = Literal["refuse", "corrupt"]


@dataclass
class ServeConfig:
    """How the server behaves; every field has a safe default.

    ``on_classifier_error``: a prompt whose classification raises is refused with 503 (``"refuse"``) or
    answered with every user token corrupted by the guard's strongest corruption (``"corrupt"``); it is
    never answered unguarded. ``audit_log`` None writes no audit log. ``admin_token`` enables
    ``POST /v1/guard/reload`` (without it, only SIGHUP reloads the guard, when ``reload_on_sighup``).

    The bounds hold before any expensive work: a chat has at most ``max_messages`` messages, a completions
    request at most ``max_prompts`` prompts, a prompt at most ``max_prompt_chars`` characters of content and
    ``max_prompt_tokens`` tokens (None: the model's context), counted before the chat template is rendered
    (400). One client address has at most ``max_concurrent_per_client`` requests in flight, and at most
    ``max_queue`` requests wait for the model (429 with ``Retry-After`` beyond either). A body must arrive
    within ``body_timeout_s`` (408), and a request ends within ``request_timeout_s`` of its arrival (503).
    """

    model_id: str = "eco-unlearn"
    guard_path: str | None = None
    audit_log: Path | None = None
    audit_prompts: bool = False
    on_classifier_error: ClassifierErrorPolicy = "refuse"
    admin_token: str | None = None
    reload_on_sighup: bool = False
    max_body_bytes: int = 1 << 20
    default_max_tokens: int = 256
    max_batch: int = 8
    batch_wait_ms: float = 2.0
    max_messages: int = 512
    max_prompts: int = 64
    max_prompt_chars: int = 262_144
    max_prompt_tokens: int | None = None
    max_concurrent_per_client: int = 8
    max_queue: int = 64
    body_timeout_s: float = 10.0
    request_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        one_of(self.on_classifier_error, "on_classifier_error", ("refuse", "corrupt"), error=ServeConfigError)
        for name in ("max_body_bytes", "default_max_tokens", "max_batch", "max_messages", "max_prompts",
                     "max_prompt_chars", "max_concurrent_per_client", "max_queue"):
            integer(getattr(self, name), name, minimum=1, error=ServeConfigError)
        if self.max_prompt_tokens is not None:
            integer(self.max_prompt_tokens, "max_prompt_tokens", minimum=1, error=ServeConfigError)
        number(self.batch_wait_ms, "batch_wait_ms", low=0, error=ServeConfigError)
        for name in ("body_timeout_s", "request_timeout_s"):
            number(getattr(self, name), name, low=0, low_open=True, error=ServeConfigError)
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise ServeConfigError("model_id must be a non-empty string")
        if self.audit_log is not None:
            self.audit_log = Path(self.audit_log)
