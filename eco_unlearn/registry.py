"""One registry class for everything looked up by name: corruptions, objectives, classifier kinds,
searches, token selections, and whatever comes next.

A ``Registry`` is a read-only ``Mapping`` from names to values (functions, classes, factories). Names are
added with ``register`` (directly or as a decorator) and never overwritten by accident; a lookup of an
unknown name raises the registry's own ``InputError`` subclass, naming the known names and the closest
match. Tests and experiments swap an entry for one block with ``override``, which puts the previous state
back afterwards, so no test edits a registry for good.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, overload

from .errors import InputError, RegistryError

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING: Any = object()


class Registry(Mapping[str, T], Generic[T]):
    """Values of one kind by name.

    ``kind`` names an entry in messages ("corruption": "unknown corruption 'x'; known corruptions: ...");
    ``plural`` is its plural when not ``kind + "s"``; ``error`` is the ``InputError`` subclass raised for
    an unknown or duplicate name, so each registry keeps the error family of its domain.
    """

    def __init__(self, kind: str, *, error: type[InputError] = RegistryError, plural: str | None = None) -> None:
        self.kind, self.plural, self.error = kind, plural or kind + "s", error
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, value: None = None, *, replace: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, value: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, value: T | None = None, *, replace: bool = False) -> T | Callable[[T], T]:
        """Add ``value`` under ``name`` and return it; without a value (``None`` is never one), return a
        decorator that does so.

        A name that is taken raises unless ``replace=True``: a typo in a plug-in must not shadow a built-in.
        """
        self._check_name(name)

        def add(entry: T) -> T:
            if name in self._entries and not replace:
                raise self.error(
                    f"{self._a_kind()} named {name!r} is registered already; pass replace=True to override it"
                )
            self._entries[name] = entry
            return entry

        return add if value is None else add(value)

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The value registered as ``name``.

        Unlike ``dict.get``, an unknown name raises (the registry's error, with the known names and a
        did-you-mean suggestion) unless a ``default`` is given: a misspelt setting must not pass silently.
        """
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise self.error(self._unknown(name))

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The registered names, sorted (iteration keeps the order of registration)."""
        return sorted(self._entries)

    @contextmanager
    def override(self, name: str, value: T | None = None) -> Iterator[T | None]:
        """Within the block, ``name`` holds ``value`` (registered or replaced); afterwards the previous entry,
        or its absence, is restored, even if the block raises.

        Without a value, nothing is set: the block may register ``name`` itself (e.g. through a
        ``register_*`` decorator under test) and the registration is undone when it ends.
        """
        self._check_name(name)
        previous = self._entries.get(name, _MISSING)
        if value is not None:
            self._entries[name] = value
        try:
            yield value
        finally:
            if previous is _MISSING:
                self._entries.pop(name, None)
            else:
                self._entries[name] = previous

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    def _check_name(self, name: Any) -> None:
        if not (isinstance(name, str) and name):
            raise self.error(f"{self._a_kind()} name must be a non-empty string, not {name!r}")

    def _a_kind(self) -> str:
        return ("an " if self.kind[:1] in "aeiou" else "a ") + self.kind

    def _unknown(self, name: Any) -> str:
        message = f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names()) or 'none'}"
        if not isinstance(name, str):
            return message
        by_lower = {known.lower(): known for known in self.names()}
        close = difflib.get_close_matches(name.lower(), by_lower, n=1)
        return message + (f"; did you mean {by_lower[close[0]]!r}?" if close else "")
