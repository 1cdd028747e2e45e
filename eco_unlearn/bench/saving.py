"""What every benchmark report does with itself: become JSON (or a PNG plot), and be written atomically."""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from dataclasses import asdict
from types import ModuleType
from typing import Any, ClassVar, Iterator

from ..extras import require
from ..io import atomic_write_bytes, atomic_write_json

__all__ = ["SavedReport", "png_figure", "require_matplotlib"]


class SavedReport:
    """Mixin for report dataclasses: ``to_dict`` (tagged with ``benchmark`` when the class names one) and
    ``save`` (atomic, so a failed run leaves the previous file intact)."""

    benchmark: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        return data if self.benchmark is None else {"benchmark": self.benchmark, **data}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())


def require_matplotlib() -> ModuleType:
    """The matplotlib module, or ``MissingDependencyError`` naming the bench extra. Long runs call it first,
    so that a missing extra fails before the work rather than at the plot that ends it."""
    return require("matplotlib", "bench", "plotting")


@contextmanager
def png_figure(path: str | os.PathLike, size: tuple[float, float]) -> Iterator[Any]:
    """Matplotlib axes to draw on; the figure is written atomically as a PNG to ``path`` when the block
    ends without an error (headless: the Agg backend)."""
    require_matplotlib().use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=120)
    try:
        yield ax
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        atomic_write_bytes(path, buffer.getvalue())
    finally:
        plt.close(fig)
