"""Serve a guarded model: an OpenAI-compatible server with an audit log, hot reload, fail-closed
classification, and a gateway that puts the guard in front of a vLLM server.

``create_app(backend)`` builds the FastAPI app; the backend is a ``LocalBackend`` (the model runs in this
process) or a ``VLLMGateway`` (the model runs in vLLM; only its embedding layer is loaded here), and its
``config`` (a ``ServeConfig``) is the server's one configuration. ``build_backend(model, config, ...)``
loads the guard and the model and builds either.

The server's dependencies (FastAPI, uvicorn, httpx) are the ``serve`` extra; importing this package without
them raises ``MissingDependencyError`` saying so.
"""

# ruff: noqa: E402  (the extra is checked before the imports below, so a missing one is one clear error)
from ..extras import require

require("fastapi", "serve", "the server")
require("uvicorn", "serve", "the server")
require("httpx", "serve", "the server")

from .app import create_app
from .audit import AuditLog
from .backends import LocalBackend, build_backend
from .config import ServeConfig
from .embedding import EmbeddingOnlyModel, load_embedding_only
from .gateway import VLLMGateway

__all__ = [
    "AuditLog", "EmbeddingOnlyModel", "LocalBackend", "ServeConfig", "VLLMGateway", "build_backend", "create_app",
    "load_embedding_only",
]
