"""PostgreSQL snapshots as values: what the change log's reader remembers between batches.

A snapshot (``pg_current_snapshot()``) says which transactions' work it sees: every xid below
``xmin``, none at or above ``xmax``, and between them all but the ``xip`` list (in progress when
it was taken). The change log is read in *snapshot deltas*, the design PgQ and Londiste proved:
a batch is every entry visible in the batch's snapshot and not visible in the one before. A commit
is delivered at the next batch whatever else is open on the server; a long transaction is
delivered when it commits. Unlike ``pg_snapshot_xmin`` as a bound, nothing open elsewhere holds
committed work back.

Snapshots of one server, taken one after another, only grow: ``xmax`` never decreases, and at an
equal ``xmax`` the in-progress list only shrinks (new xids are at or above ``xmax``). So
``(xmax, xmin, -len(xip))`` orders them as they were taken, and two snapshots with equal ranks
see exactly the same transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_XIP_BITS = 20
"""Room for the in-progress count in an external version: a million open top-level xids."""
MAX_EXTERNAL = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """The text form PostgreSQL prints: ``xmin:xmax:xip,xip,…``."""
        try:
            xmin, xmax, xip = str(text).split(":")
            return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))
        except ValueError:
            raise ValueError(f"not a PostgreSQL snapshot: {text!r}") from None

    @classmethod
    def below(cls, xid: int) -> Snapshot:
        """Sees every xid below ``xid`` and nothing else: how a position of the old reader (an
        xmin bound) reads in this one. Conservative: entries at or above it are read again."""
        return cls(xid, xid, ())

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    @property
    def rank(self) -> tuple[int, int, int]:
        """Orders snapshots of one server as they were taken (see the module docstring)."""
        return (self.xmax, self.xmin, -len(self.xip))

    def visible(self, xid: int) -> bool:
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)

    def external_version(self) -> int:
        """The OpenSearch external version of content read under this snapshot.

        It grows with :attr:`rank` and is equal only for snapshots that see the same
        transactions, so a document read later never carries a lower version than one read
        earlier, and two reads of different content never carry the same one (``pg_snapshot_xmin``
        did: a long transaction kept it still while commits went on)."""
        open_ = min(len(self.xip), (1 << _XIP_BITS) - 1)
        version = (self.xmax << _XIP_BITS) | ((1 << _XIP_BITS) - 1 - open_)
        if version > MAX_EXTERNAL:
            raise OverflowError(f"snapshot {self} does not fit an external version")
        return version

    def to_json(self) -> str:
        return str(self)

    @classmethod
    def from_json(cls, data: Any) -> Snapshot:
        return cls.parse(str(data))


def earliest(snapshots: list[Snapshot]) -> Snapshot:
    """The first taken: it sees a subset of what every other one sees."""
    return min(snapshots, key=lambda s: s.rank)
