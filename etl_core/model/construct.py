"""Building frozen, slotted dataclasses from a row's values, at the cost of a plain class.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (the
class's own ``__setattr__`` refuses): for the catalogue's thirteen-field record that is about
2.3 µs a row, more than psycopg takes to decode the row. The constructor made here writes the
slots through their descriptors instead, in code generated once per class as ``dataclasses``
generates ``__init__`` itself: 1.2 µs, the same object (equal, hashable, still frozen).

It is used only where it is exactly equivalent: a class whose every field is an ``__init__``
parameter and that has no ``__post_init__`` (which the fast path would skip). Anything else
gets the class itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


def positional(cls: type[T]) -> Callable[..., T]:
    """``cls(*values)`` with every field given in declaration order, built without running the
    generated ``__init__`` when that is safe (see the module's docstring)."""
    if not dataclasses.is_dataclass(cls) or not hasattr(cls, "__slots__"):
        return cls
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        return cls
    names = [f"v{i}" for i in range(len(fields))]
    setters = {f"set{i}": cls.__dict__[f.name].__set__ for i, f in enumerate(fields)}
    body = "".join(f"    set{i}(o, v{i})\n" for i in range(len(fields)))
    code = f"def build({', '.join(names)}):\n    o = new(cls)\n{body}    return o\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, **setters}
    exec(code, namespace)
    build = namespace["build"]
    build.__qualname__ = f"positional({cls.__qualname__})"
    return cast(Callable[..., T], build)
