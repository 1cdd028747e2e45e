"""The server's guard: a snapshot per request and hot reload.

Each request takes the current ``GuardSnapshot`` when it arrives and keeps it to the end, so a reload
never changes the guard under a request in flight. A reload loads and checks the new folder fully
(``Guard.load``, the model fingerprint, and a probe text through its classifiers) before it swaps; a
broken folder raises and the old guard stays. How a snapshot's guard classifies and fails closed is in
``failclosed.py``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import GuardError
from ..models import ModelFingerprint, fingerprint
from ..runtime.guard import Guard
from .failclosed import decide_finite

__all__ = ["RELOAD_PROBE", "GuardHolder", "GuardSnapshot", "guard_version"]

RELOAD_PROBE = "Hello! Could you help me with a question, please?"  # classified by a new guard before a swap


def guard_version(guard: Guard | None) -> str:
    """A short digest of a guard's manifest: two loads of the same folder have the same version."""
    if guard is None:
        return "none"
    data = {k: v for k, v in guard.to_dict().items() if k != "eco_unlearn_version"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GuardSnapshot:
    """One loaded guard (None: the server runs unguarded) with where it came from."""

    guard: Guard | None
    version: str
    path: str | None
    generation: int
    loaded_at: float

    def describe(self) -> dict[str, Any]:
        """Everything about the guard, for operators: its folder and target names reveal the forget scope."""
        return {
            **self.public(),
            "path": self.path,
            "loaded_at": self.loaded_at,
            "targets": [t.name for t in self.guard.targets] if self.guard else [],
        }

    def public(self) -> dict[str, Any]:
        """What anyone may see: an opaque digest of the guard and how many reloads happened."""
        return {"version": self.version, "generation": self.generation}


class GuardHolder:
    """The guard currently in force for ``model``; ``reload`` swaps in a new one under a lock."""

    def __init__(self, model: Any, guard: Guard | None, path: str | None = None, *, force: bool = False) -> None:
        self.model, self.force = model, force
        if guard is not None:
            guard.check_model(model, force=force, fingerprint=self.model_fingerprint)
        self._lock = threading.Lock()
        self._current = GuardSnapshot(guard, guard_version(guard), str(path) if path else None, 0, time.time())

    @property
    def current(self) -> GuardSnapshot:
        return self._current

    @cached_property
    def model_fingerprint(self) -> ModelFingerprint:
        """The served model's fingerprint, hashed once: every reload checks the new guard against it."""
        return fingerprint(self.model)

    def reload(self, path: str | None = None) -> GuardSnapshot:
        """Load the guard folder ``path`` (default: the one loaded last), check it against the model,
        classify ``RELOAD_PROBE`` with it, and swap it in. Any problem (a classifier that raises or scores
        NaN or infinity on the probe included) raises ``GuardError`` and leaves the current guard in force."""
        with self._lock:
            path = path or self._current.path
            if path is None:
                raise GuardError("no guard folder to reload: the server was started without --guard; give a path")
            guard = Guard.load(path)
            guard.check_model(self.model, force=self.force, fingerprint=self.model_fingerprint)
            try:
                decide_finite(guard, [RELOAD_PROBE])
            except Exception as exc:  # a user-registered classifier may raise anything
                reason = f"{type(exc).__name__}: {exc}"[:500]
                raise GuardError(f"the guard's classifier fails on a probe text ({reason})") from None
            generation = self._current.generation + 1
            self._current = GuardSnapshot(guard, guard_version(guard), str(path), generation, time.time())
            return self._current
