"""What every benchmark report does with itself: become JSON, and be written atomically."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, ClassVar

from ..io import atomic_write_json

__all__ = ["SavedReport"]


class SavedReport:
    """Mixin for report dataclasses: ``to_dict`` (tagged with ``benchmark`` when the class names one) and
    ``save`` (atomic, so a failed run leaves the previous file intact)."""

    benchmark: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        return data if self.benchmark is None else {"benchmark": self.benchmark, **data}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())
