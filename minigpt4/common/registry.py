"""A small name -> builder registry, one instance per kind of component.

Each kind (vision encoders, datasets, ...) owns its own `Registry` next to its builders, so
there is no process-wide mutable registry and an unknown name is reported with the names that
do exist.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from minigpt4.common.errors import UserError

T = TypeVar("T", bound=Callable)


class UnknownName(UserError, KeyError):
    """A name no builder is registered under (a config value to fix)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(builder: T) -> T:
            if name in self._builders:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> T:
        try:
            return self._builders[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._builders, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownName(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._builders))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders
