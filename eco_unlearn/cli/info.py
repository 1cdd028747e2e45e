"""``eco-unlearn inspect`` and ``eco-unlearn models``: what a guard holds, which models are embedded."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import errors
from .render import guard_table, models_table


def inspect(path: Path = typer.Argument(..., help="A guard folder.")) -> None:
    """Show what a guard artifact holds."""
    from ..runtime import Guard

    with errors():
        guard_table(path, Guard.load(path))


def models() -> None:
    """List the embedded default models and whether they are converted in the cache."""
    from ..models import EMBEDDED_MODELS, cache_dir

    models_table(list(EMBEDDED_MODELS.values()), cache_dir())
