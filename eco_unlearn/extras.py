"""Optional dependencies: import one where it is used, or say which pip extra installs it.

``pip install eco-unlearn`` brings what the library and the CLI need; the server (``[serve]``), plots and
benchmarks (``[bench]``) and GGUF conversion (``[gguf]``) are extras, so their imports go through ``require``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import and return ``module``; if it cannot be imported, raise ``MissingDependencyError`` saying that
    ``purpose`` (e.g. "the server") needs the ``extra`` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the {extra} extra: pip install 'eco-unlearn[{extra}]' ({exc})"
        ) from exc
