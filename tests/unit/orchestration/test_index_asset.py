"""The index asset and the observed source, materialised in process on an ephemeral instance over
the fake engine: what a run writes (documents, cursors in the state store) and what it shows
(the partition's metadata). The same runs on the real services are in ``tests/orchestration``.
"""

from __future__ import annotations

from dagster import AssetKey

from etl_core.model.cursor import Cursor
from tests.unit.fakes import at
from tests.unit.orchestration.rig import HEAD, Rig


def test_a_sync_run_indexes_the_transformed_rows_and_keeps_its_cursor_in_state(rig: Rig) -> None:
    rig.sync("v1")

    index = rig.world.sink.docs["items_v1"]
    assert sorted(index, key=int) == ["1", "2", "3", "4", "5", "6"]
    assert rig.world.sink.document("items_v1", "3") == {"name": "item 3", "qty": 3}
    assert rig.world.cursors.cursors == {"v1": HEAD}
    assert rig.world.lanes.taken == [("v1",)] and not rig.world.lanes.holders  # held, then let go
    assert rig.world.sink.finished == ["v1"]  # caught up: serving settings restored

    shown = rig.metadata("v1")
    assert shown["cursor"] == {"changed_at": at(6).isoformat(), "key": 6}
    assert shown["docs_indexed"] == 6
    assert shown["lifecycle"] == "catching_up"  # caught up, not validated yet
    assert shown["lag_rows"] == 0
    assert shown["caught_up"] is True
    assert shown["lane"] == "v1"


def test_a_catch_up_run_stops_at_its_page_budget_and_the_next_goes_on_from_its_cursor(rig: Rig) -> None:
    (request,) = rig.sensor_tick().run_requests or []  # v1-v2, two pages of two rows a run

    assert rig.execute(request).success
    assert rig.world.cursors.cursors == {"v1": Cursor(at(4), 4), "v2": Cursor(at(4), 4)}
    assert len(rig.world.sink.docs["items_v2"]) == 4
    first = rig.metadata("v2")
    assert (first["docs_indexed"], first["lag_rows"], first["caught_up"]) == (4, 2, False)
    assert first["lifecycle"] == "building"
    assert rig.world.sink.finished == []

    assert rig.execute(request).success
    assert rig.world.cursors.cursors == {"v1": HEAD, "v2": HEAD}
    second = rig.metadata("v2")
    assert (second["docs_indexed"], second["lag_rows"], second["caught_up"]) == (2, 0, True)


def test_a_row_the_transform_refuses_is_a_dead_letter_and_the_rest_index(rig: Rig) -> None:
    rig.world.table[1] = (2, None, 2, at(2), None)  # the transform needs a name

    rig.sync("v1")

    assert "2" not in rig.world.sink.docs["items_v1"]
    assert [(d.version, d.key) for d in rig.world.letters.letters] == [("v1", "2")]
    assert rig.world.cursors.cursors == {"v1": HEAD}  # a letter does not hold the cursor back
    shown = rig.metadata("v1")
    assert (shown["docs_indexed"], shown["dead_letters"], shown["open_dead_letters"]) == (5, 1, 1)


def test_the_source_is_observed_with_its_head_and_what_waits(rig: Rig) -> None:
    """The ``items_observe`` job (its schedule's target): the head, the committed changes
    waiting for the slowest version, and no made-up age while a version has not begun."""
    node = rig.defs.resolve_asset_graph().get(AssetKey("items_source"))
    assert node.kinds == {"postgres"} and node.owners == ["team:search"]

    def observed() -> dict[str, object]:
        result = rig.defs.resolve_job_def("items_observe").execute_in_process(instance=rig.instance)
        assert result.success
        (event,) = result.get_asset_observation_events()
        return {k: v.value for k, v in event.asset_observation_data.asset_observation.metadata.items()}

    rig.synced("v1")
    first = observed()
    assert first["head"] == HEAD.describe() and first["versions"] == "v1,v2"
    assert first["waiting_rows"] == 6  # v2 has read nothing
    assert first["oldest_waiting_age_s"] is None  # v2 has not begun: no age to give
    rig.synced("v2")
    assert observed()["waiting_rows"] == 0
