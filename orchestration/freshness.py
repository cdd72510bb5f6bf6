"""Freshness of an index asset from the real lag, not from when it last materialised.

Dagster's own evaluator (its daemon's ``FreshnessDaemon``) measures the time since an asset's
last materialisation. Here that says little: a follower materialises once per follow window
however fresh its data, a sync of a catch-up lane materialises the asset while the version
readers query has stalled, and a source where nothing changes is fresh with no run at all. So
the policy (``FreshnessPolicy.time_window``, warn and fail windows from ``ETL_FRESHNESS_WARN_S``
and ``ETL_FRESHNESS_FAIL_S``) is declared on the asset, where the UI shows it, and its state is
computed here from the age of the oldest committed change a counted version has not applied
(:class:`etl_core.model.records.Lag`), and recorded in the instance after every sync and every
observation of the source. ``dagster.yaml`` turns the daemon's evaluation off, since it would
write its own verdict over this one every 30 s; an instance of your own needs the same
``freshness: enabled: false``.

Counted versions: those readers query (the read alias names their index) and those that passed
their latest validation (ready to take over). A version being built for a migration lags by
design until it catches up; its progress is its partition's. Before any version is live or
validated (a first deployment), every version with a cursor counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from dagster import AssetKey, DagsterInstance, FreshnessPolicy

# Not exported by ``dagster`` 1.13, but what ``DagsterInstance.report_runless_asset_event``
# (public) takes for a freshness state; the pin on dagster keeps them in step, and
# tests/unit/orchestration/test_freshness.py reads the state back through the instance.
from dagster._core.definitions.freshness import (
    FreshnessState,
    FreshnessStateChange,
    TimeWindowFreshnessPolicy,
)

from etl_core.model.records import Lag
from etl_core.operations.connect import Connections
from etl_core.settings import Declared
from orchestration.planning import active
from orchestration.spec import SourceSpec


def policy_of(env: Declared) -> TimeWindowFreshnessPolicy:
    return FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=env.etl_freshness_fail_s),
        warn_window=timedelta(seconds=env.etl_freshness_warn_s),
    )


@dataclass(frozen=True)
class Verdict:
    state: FreshnessState
    counted: tuple[str, ...]
    worst_age_s: float | None
    """The oldest unapplied change's age among the counted versions (None: nothing counted;
    ``inf``: a counted version has never finished walking the source)."""

    def describe(self) -> str:
        if self.worst_age_s is None:
            return f"freshness {self.state.value}: no version synced yet"
        age = "never caught up" if math.isinf(self.worst_age_s) else f"{self.worst_age_s:.0f} s"
        return f"freshness {self.state.value}: oldest unapplied change {age} (versions {list(self.counted)})"


def counted(keys: Sequence[str], served: set[str], validated: set[str], synced: set[str]) -> list[str]:
    """The versions whose lag makes the asset fresh or not (module docstring)."""
    chosen = [k for k in keys if k in served or k in validated]
    return chosen or [k for k in keys if k in synced]


def judge(ages: Mapping[str, float], keys: Sequence[str], policy: TimeWindowFreshnessPolicy) -> Verdict:
    """PASS under the warning window, WARN inside it, FAIL past the fail window."""
    if not keys:
        return Verdict(FreshnessState.UNKNOWN, (), None)
    worst = max(ages.get(k, 0.0) for k in keys)
    fail = policy.fail_window.to_timedelta().total_seconds()
    warn = policy.warn_window.to_timedelta().total_seconds() if policy.warn_window else None
    if worst >= fail:
        state = FreshnessState.FAIL
    elif warn is not None and worst >= warn:
        state = FreshnessState.WARN
    else:
        state = FreshnessState.PASS
    return Verdict(state, tuple(keys), worst)


def evaluate(
    conns: Connections, spec: SourceSpec, policy: TimeWindowFreshnessPolicy, lag: Lag | None = None
) -> Verdict:
    """The verdict for ``spec``'s source now (``lag``: the caller's, when it covers every active
    version; one statement otherwise)."""
    keys = active(spec.versions, conns.records.retired())
    cursors = conns.cursors.load(keys)
    if lag is None or any(k not in lag.seconds and k not in lag.rows_behind for k in keys):
        lag = conns.extractor(spec.source).lag(cursors)
    served_indices = set(conns.sink.alias_targets(spec.read_alias))
    served = {v.key for v in spec.versions if v.index in served_indices}
    validated = {k for k, passed in conns.records.latest_outcomes().items() if passed}
    synced = {k for k, c in cursors.items() if c is not None}
    chosen = counted(keys, served, validated, synced)
    return judge({k: lag.seconds_behind(k) for k in chosen}, chosen, policy)


def record(instance: DagsterInstance, asset: AssetKey, verdict: Verdict) -> bool:
    """Record the state when it changed (the UI shows the latest); whether it did."""
    previous = instance.get_freshness_state_records([asset]).get(asset)
    before = previous.freshness_state if previous is not None else FreshnessState.UNKNOWN
    if previous is not None and before == verdict.state:
        return False
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=asset, new_state=verdict.state, previous_state=before, state_change_timestamp=time.time()
        )
    )
    return True
