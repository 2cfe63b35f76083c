"""`Registry`: one small type for every extension point (slots, variants, tasks, studies, probes,
optimizers, columns). It imports nothing of ours, so any layer may hold one.

    TASKS = Registry("task")
    @TASKS.register("addition", description="a+b=c, answer reversed")
    class AdditionTask(Task): ...
    TASKS.get("addtion")   # ValueError: unknown task 'addtion'; valid tasks: addition, ...

A plugin file (`--plugin FILE`) registers into the same objects, so what it adds is listed,
swept and reported like a built-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, in registration order, with an optional one-line description each.

    `get` of an unknown name raises `error` (ValueError by default) in one line that lists the
    valid names; `register` refuses a name already taken unless `replace=True`, so two plugins
    cannot silently shadow one another.
    """

    def __init__(self, kind: str, plural: str | None = None, error: type[Exception] = ValueError):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.error = error
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, description: str = "",
                 replace: bool = False) -> Callable[[T], T] | T:  # fmt: skip
        """`register(name, obj)` adds `obj`; `@register(name)` is the same as a decorator."""
        if not isinstance(name, str) or not name:
            raise self.error(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            if name in self._items and not replace and self._items[name] is not item:
                raise self.error(
                    f"{self.kind} {name!r} is already registered; pick another name, or pass "
                    "replace=True to override it on purpose"
                )
            self._items[name] = item
            self._descriptions[name] = description or self._descriptions.get(name, "")
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown(name)) from None

    def unknown(self, name) -> str:
        """The one-line message for a name that is not registered."""
        return f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self._items)}"

    def names(self) -> list[str]:
        return list(self._items)

    def description(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def remove(self, name: str) -> None:
        """Drop `name` (tests that register a temporary entry clean up with this)."""
        self.get(name)
        del self._items[name], self._descriptions[name]

    def __delitem__(self, name: str) -> None:  # `del REG[name]`, as on the dicts it replaced
        self.remove(name)

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
