"""Settings of the OpenAI-compatible server, in one dataclass the CLI fills and tests build directly.

The backend holds it (``LocalBackend(..., config)``, ``build_backend(model, config)``) and ``create_app``
reads it from there, so the whole server follows one configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import EcoUnlearnError

__all__ = ["ClassifierErrorPolicy", "ServeConfig"]

ClassifierErrorPolicy = Literal["refuse", "corrupt"]


@dataclass
class ServeConfig:
    """How the server behaves; every field has a safe default.

    ``on_classifier_error``: a prompt whose classification raises is refused with 503 (``"refuse"``) or
    answered with every user token corrupted by the guard's strongest corruption (``"corrupt"``); it is
    never answered unguarded. ``audit_log`` None writes no audit log. ``admin_token`` enables
    ``POST /v1/guard/reload`` (without it, only SIGHUP reloads the guard, when ``reload_on_sighup``).
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

    def __post_init__(self) -> None:
        if self.on_classifier_error not in ("refuse", "corrupt"):
            raise EcoUnlearnError(
                f"on_classifier_error must be 'refuse' or 'corrupt', not {self.on_classifier_error!r}"
            )
        for name in ("max_body_bytes", "default_max_tokens", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EcoUnlearnError(f"{name} must be a positive integer, not {value!r}")
        if not self.batch_wait_ms >= 0:
            raise EcoUnlearnError(f"batch_wait_ms must be >= 0, not {self.batch_wait_ms!r}")
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise EcoUnlearnError("model_id must be a non-empty string")
        if self.audit_log is not None:
            self.audit_log = Path(self.audit_log)
