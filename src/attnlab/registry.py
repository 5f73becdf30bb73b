"""A small generic registry: names to builders, so configs hold strings and serialize to JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a class or function.

    >>> ATTENTION = Registry("attention")
    >>> @ATTENTION.register("multi_head")
    ... class MultiHeadAttention: ...
    >>> ATTENTION.build("multi_head", d_model=64, n_heads=4)  # doctest: +SKIP
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or function under `name` (names are unique)."""

        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """The registered class or function; an unknown name raises KeyError listing valid names."""
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise KeyError(f"unknown {self.kind} {name!r}; expected one of: {valid}") from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Build the entry `name` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
