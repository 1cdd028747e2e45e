"""The server's guard: a snapshot per request, hot reload, and fail-closed classification.

Each request takes the current ``GuardSnapshot`` when it arrives and keeps it to the end, so a reload
never changes the guard under a request in flight. A reload loads and checks the new folder fully
(``Guard.load``, the model fingerprint, and a probe text through its classifiers) before it swaps; a
broken folder raises and the old guard stays.

Classification fails closed: a prompt whose classifier raises is marked with ``FAIL_CLOSED_TARGET`` and
gets every user token corrupted with the guard's strongest corruption; a flagged prompt whose token
selection picks no token gets ``NO_TOKEN_TARGET`` added, which corrupts every user token with its own
targets' corruption. The server then refuses such a prompt or answers it corrupted
(``ServeConfig.on_classifier_error``), never unguarded.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..classifier.base import ConstantClassifier
from ..errors import GuardError
from ..runtime.guard import Guard, GuardDecision, Target
from ..runtime.guarded import GuardedModel
from ..runtime.prompts import PromptInput
from ..runtime.tokens import TokenSelection

__all__ = [
    "FAIL_CLOSED_TARGET", "NO_TOKEN_TARGET", "RELOAD_PROBE", "Classified", "DecidedGuard", "GuardHolder",
    "GuardSnapshot", "check_selections", "classify",
]

FAIL_CLOSED_TARGET = "classifier-error"  # the classifier failed: every user token, the strongest corruption
NO_TOKEN_TARGET = "no-token-selected"  # flagged, but the selection picked nothing: every user token
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
            guard.check_model(model, force=force)
        self._lock = threading.Lock()
        self._current = GuardSnapshot(guard, guard_version(guard), str(path) if path else None, 0, time.time())

    @property
    def current(self) -> GuardSnapshot:
        return self._current

    def reload(self, path: str | None = None) -> GuardSnapshot:
        """Load the guard folder ``path`` (default: the one loaded last), check it against the model,
        classify ``RELOAD_PROBE`` with it, and swap it in. Any problem (a classifier that raises or scores
        NaN or infinity on the probe included) raises ``GuardError`` and leaves the current guard in force."""
        with self._lock:
            path = path or self._current.path
            if path is None:
                raise GuardError("no guard folder to reload: the server was started without --guard; give a path")
            guard = Guard.load(path)
            guard.check_model(self.model, force=self.force)
            try:
                _decide(guard, [RELOAD_PROBE])
            except Exception as exc:  # a user-registered classifier may raise anything
                reason = f"{type(exc).__name__}: {exc}"[:500]
                raise GuardError(f"the guard's classifier fails on a probe text ({reason})") from None
            generation = self._current.generation + 1
            self._current = GuardSnapshot(guard, guard_version(guard), str(path), generation, time.time())
            return self._current


@dataclass
class Classified:
    """Decisions for a batch of user texts, the classifier's error for each text where it raised, and
    (after ``check_selections``) why a flagged text's token selection could not be used."""

    decisions: list[GuardDecision]
    errors: list[str | None]
    selection_errors: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.selection_errors = self.selection_errors or [None] * len(self.decisions)

    @property
    def failed(self) -> bool:
        """Whether the classifier failed on any text."""
        return any(e is not None for e in self.errors)

    def failures(self) -> list[dict[str, str]]:
        """Per text, the audit fields saying why it fails closed (empty where it does not)."""
        return [{**({"classifier_error": e} if e else {}), **({"selection_error": s} if s else {})}
                for e, s in zip(self.errors, self.selection_errors)]

    @property
    def fails_closed(self) -> bool:
        """Whether any text must be refused or answered with every user token corrupted."""
        return any(self.failures())


def _fail_closed(guard: Guard) -> GuardDecision:
    return GuardDecision(True, [FAIL_CLOSED_TARGET], {}, corruptions=Guard._strongest(guard.targets))


def _decide(guard: Guard, texts: list[str]) -> list[GuardDecision]:
    """``guard.decide(texts)``, raising when a score is not a number: NaN never reaches a threshold, so
    a classifier that fails that way would otherwise pass every text as unflagged."""
    decisions = guard.decide(texts)
    for decision in decisions:
        bad = sorted(name for name, score in decision.scores.items() if not math.isfinite(score))
        if bad:
            raise ValueError(f"non-finite score from target(s) {', '.join(bad)}")
    return decisions


def classify(guard: Guard | None, texts: Sequence[str]) -> Classified:
    """``guard.decide(texts)``, failing closed: if the classifiers raise (or score NaN), each text is
    classified alone and those that still fail get a ``FAIL_CLOSED_TARGET`` decision (every user token
    corrupted)."""
    texts = list(texts)
    if guard is None:
        return Classified([GuardDecision(False, [], {}) for _ in texts], [None] * len(texts))
    try:
        return Classified(_decide(guard, texts), [None] * len(texts))
    except Exception:  # any classifier failure; retried per text below
        pass
    decisions, errors = [], []
    for text in texts:
        try:
            decisions.extend(_decide(guard, [text]))
            errors.append(None)
        except Exception as exc:  # a user-registered classifier may raise anything
            decisions.append(_fail_closed(guard))
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
    return Classified(decisions, errors)


class DecidedGuard:
    """A guard whose decisions are already made, for ``GuardedModel``: it answers ``decide`` with them.

    ``GuardedModel`` asks its guard for ``decide``, ``target(name)`` and ``seed``; this stands in for the
    snapshot's guard (checked against the model when it was loaded), adding the fail-closed targets
    (``FAIL_CLOSED_TARGET``, ``NO_TOKEN_TARGET``), which select every user token.
    """

    def __init__(self, guard: Guard, decisions: Sequence[GuardDecision]) -> None:
        self.guard, self.seed, self._decisions = guard, guard.seed, list(decisions)
        strongest = Guard._strongest(guard.targets)
        self._fallback = Target(FAIL_CLOSED_TARGET, ConstantClassifier(1.0), strongest[0], tokens=TokenSelection("all"))

    def decide(self, texts: Sequence[str]) -> list[GuardDecision]:
        if len(texts) != len(self._decisions):
            raise RuntimeError(f"decided {len(self._decisions)} prompts but asked about {len(texts)}")
        return list(self._decisions)

    def target(self, name: str) -> Target:
        return self._fallback if name in (FAIL_CLOSED_TARGET, NO_TOKEN_TARGET) else self.guard.target(name)


def check_selections(guarded: GuardedModel, guard: Guard | None, prompts: Sequence[PromptInput],
                     reserves: Sequence[int], classified: Classified) -> Classified:
    """Fail closed on flagged prompts whose token selection picks no token (an ``entities`` selection
    without fallback whose entities do not occur, or tokens truncated away), which ``GuardedModel`` would
    answer uncorrupted: their decisions get ``NO_TOKEN_TARGET`` (every user token corrupted, with their
    targets' corruption) and a selection error. ``guarded`` tokenizes as generation will (its
    truncation, ``reserves`` new tokens per prompt); its guard is restored afterwards."""
    if guard is None:
        return classified
    decisions, selection_errors = list(classified.decisions), list(classified.selection_errors)
    saved = guarded.guard
    try:
        for i, (prompt, reserve, decision) in enumerate(zip(prompts, reserves, decisions)):
            if not decision.flagged or FAIL_CLOSED_TARGET in decision.targets:
                continue
            guarded.guard = DecidedGuard(guard, [decision])
            (row,) = guarded._rows([prompt], False, reserve, warn=False)
            if not any(row.mask):
                decisions[i] = replace(decision, targets=[*decision.targets, NO_TOKEN_TARGET])
                selection_errors[i] = (f"flagged by {', '.join(decision.targets)}, but the token selection picked "
                                       "no token of the user's text")
    finally:
        guarded.guard = saved
    return Classified(decisions, list(classified.errors), selection_errors)
