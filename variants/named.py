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
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

# The plugin file being imported (innermost last), set by `bench.exec.plugins.load_plugin`:
# what a plugin registers is tagged with its file, what anything else registers is built-in.
_PLUGINS: list[str] = []


@contextmanager
def plugin_origin(path: str):
    """Tag every registration made inside the block as the plugin file `path`'s."""
    _PLUGINS.append(path)
    try:
        yield
    finally:
        _PLUGINS.pop()


class Registry(Generic[T]):
    """Name -> object, in registration order, with an optional one-line description each.

    `get` of an unknown name raises `error` (ValueError by default) in one line that lists the
    valid names; `register` refuses a name already taken unless `replace=True`. A plugin file
    may never take a name the suite or another plugin registered, `replace` or not: a block
    or variant under a built-in's name would train another model under the built-in's run ids.
    It may register its own names again (it is imported again by each in-process command).
    """

    def __init__(self, kind: str, plural: str | None = None, error: type[Exception] = ValueError):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.error = error
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._origins: dict[str, str] = {}  # name -> the plugin file that registered it, or ""

    def register(self, name: str, obj: T | None = None, *, description: str = "",
                 replace: bool = False) -> Callable[[T], T] | T:  # fmt: skip
        """`register(name, obj)` adds `obj`; `@register(name)` is the same as a decorator."""
        if not isinstance(name, str) or not name:
            raise self.error(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            origin = _PLUGINS[-1] if _PLUGINS else ""
            if name in self._items and self._items[name] is not item:
                self._check_replace(name, origin, replace)
            self._items[name] = item
            self._origins[name] = origin
            self._descriptions[name] = description or self._descriptions.get(name, "")
            return item

        return add if obj is None else add(obj)

    def _check_replace(self, name: str, origin: str, replace: bool) -> None:
        owner = self._origins.get(name, "")
        if origin and owner != origin:
            by = f"registered by the plugin {owner}" if owner else "a built-in"
            raise self.error(
                f"{self.kind} {name!r} is {by}; a plugin cannot replace it (its runs would keep "
                "those run ids with another model's numbers): register yours under another name"
            )
        if not origin and not replace:
            raise self.error(
                f"{self.kind} {name!r} is already registered; pick another name, or pass "
                "replace=True to override it on purpose"
            )

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
        self._origins.pop(name, None)

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
