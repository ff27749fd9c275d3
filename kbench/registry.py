"""A small name -> object registry, one per kind of thing (models, data sets)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from kbench.errors import KbenchError

T = TypeVar("T")


class UnknownNameError(KbenchError):
    """Raised when a name is not registered; the message lists the known names."""


class Registry(Generic[T]):
    """Maps names to builders. Registering a name twice is an error, never an overwrite."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("a3")`` above a builder function."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
