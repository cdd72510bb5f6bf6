"""The fast constructor of frozen, slotted records gives the object the class's ``__init__`` would."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from etl_core.model.construct import positional
from etl_core.model.cursor import LogCursor
from etl_core.model.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    name: str | None
    tags: list[str]
    at: datetime


@dataclass(frozen=True, slots=True)
class Checked:
    id: int

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True)
class Derived:
    id: int
    label: str = field(init=False, default="x")


def test_it_builds_the_object_the_class_would_and_keeps_it_frozen() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    build = positional(Row)
    assert build is not Row
    built = build(1, None, ["a"], at)
    assert built == Row(1, None, ["a"], at)
    assert type(built) is Row
    assert dataclasses.asdict(built) == {"id": 1, "name": None, "tags": ["a"], "at": at}
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 2  # type: ignore[misc]


def test_a_class_with_post_init_or_a_derived_field_keeps_its_own_init() -> None:
    assert positional(Checked) is Checked
    assert positional(Derived) is Derived
    with pytest.raises(ValueError, match="negative"):
        positional(Checked)(-1)


def test_log_cursors_built_fast_order_and_hash_as_before() -> None:
    snapshot = Snapshot.parse("100:100:")
    a, b = LogCursor.backfill(3, snapshot), LogCursor(0, snapshot, 3, None)
    assert a == b and hash(a) == hash(b)
    assert LogCursor.backfill(2, snapshot) < a < LogCursor.in_batch(snapshot, Snapshot.parse("120:120:"), 1)
