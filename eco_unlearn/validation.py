"""Small declarative checks for settings, shared by every config: one wording, one place.

Each check returns the value it accepted (so ``self.n = integer(self.n, "n", minimum=1)`` reads as a
declaration) and raises ``error`` (an ``InputError`` subclass; the caller's own, so messages keep their
family) with a message that names the setting, what it must be, and the value given.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, TypeVar

from .errors import InputError

__all__ = ["is_integer", "is_number", "integer", "number", "one_of"]

T = TypeVar("T")


def is_integer(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is an ``int`` in Python, never a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer_kind(minimum: int | None, maximum: int | None) -> str:
    if minimum == 1 and maximum is None:
        return "a positive integer"
    if minimum == 0 and maximum is None:
        return "a non-negative integer"
    if minimum is not None and maximum is not None:
        return f"an integer from {minimum} to {maximum}"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None,
            error: type[InputError] = InputError, what: str | None = None) -> int:
    """``value`` if it is an integer (not a bool) within ``[minimum, maximum]``; ``what`` overrides the
    description in the message (e.g. "a 64-bit signed integer")."""
    ok = is_integer(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise error(f"{name} must be {what or _integer_kind(minimum, maximum)}, not {value!r}")
    return value


def number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, error: type[InputError] = InputError) -> float:
    """``value`` if it is a finite number within the interval from ``low`` to ``high`` (closed unless
    ``low_open``/``high_open``); ``None`` bounds are unbounded."""
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise error(f"{name} must {_interval(low, high, low_open, high_open)}, not {value!r}")
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return ("be positive" if low == 0 else f"be > {low:g}") if low_open else f"be >= {low:g}"
    if high is not None:
        return f"be < {high:g}" if high_open else f"be <= {high:g}"
    return "be a finite number"


def one_of(value: T, name: str, choices: Iterable[T], *, error: type[InputError] = InputError) -> T:
    """``value`` if it is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        names = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}" if len(choices) > 1 else repr(choices[0])
        raise error(f"{name} must be {names}, not {value!r}")
    return value
