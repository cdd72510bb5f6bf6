"""Which record fields a transform or predicate reads, found by calling it once on a stand-in.

``IndexVersion.needs`` is written by hand; nothing else stops it from drifting away from the code
it describes, and a transform that reads a field the record lacks fails on every row, at run time,
as a dead letter each. Calling the function once, at load, on a record whose every attribute is a
permissive stand-in shows what it reads: attribute access, ``getattr`` with a name, iteration,
arithmetic and method calls on the values all work on the stand-in. Only what the call actually
touched is reported, so a branch not taken is not seen: the check can miss a read, never invent
one. A function the stand-in cannot satisfy (``dataclasses.asdict``, ``isinstance``) gives
``None``: nothing is known, nothing is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class _Anything:
    """Any value: every operation on it gives another stand-in (or a plain, harmless answer)."""

    def __getattr__(self, name: str) -> _Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return _ANY

    def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
        return _ANY

    def __getitem__(self, key: Any) -> _Anything:
        return _ANY

    def __iter__(self) -> Iterator[_Anything]:
        return iter((_ANY,))

    def __contains__(self, item: Any) -> bool:
        return True

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def __int__(self) -> int:
        return 1

    def __index__(self) -> int:
        return 1

    def __float__(self) -> float:
        return 1.0

    def __str__(self) -> str:
        return "x"

    def __format__(self, spec: str) -> str:
        return "x"

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return other is self

    def __lt__(self, other: Any) -> bool:
        return True

    def __le__(self, other: Any) -> bool:
        return True

    def __gt__(self, other: Any) -> bool:
        return True

    def __ge__(self, other: Any) -> bool:
        return True

    def _same(self, *other: Any) -> _Anything:
        return _ANY

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _same
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __round__ = _same
    __and__ = __rand__ = __or__ = __ror__ = _same


_ANY = _Anything()


class _Record:
    """The record handed to the function: it remembers every attribute asked of it."""

    _seen: set[str]

    def __init__(self) -> None:
        object.__setattr__(self, "_seen", set())

    def __getattr__(self, name: str) -> _Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        self._seen.add(name)
        return _ANY


def fields_read(fn: Callable[[Any], Any]) -> frozenset[str] | None:
    """The record attributes ``fn`` reads on one call, or None when the stand-in did not get it
    to the end (then nothing is known)."""
    record = _Record()
    try:
        fn(record)
    except Exception:
        return None
    return frozenset(record._seen)
