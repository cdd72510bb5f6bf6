"""Documents built in PostgreSQL (``IndexVersion.document_sql``, ``predicate_sql``), opt-in per
version, beside Python-transformed versions in one lane: the demo's SQL twins of v1 and v3 give
the very documents their Python transforms give, row for row, through a backfill, the change
log (updates, a hard delete, a parent rename, a row leaving the predicate) and a change column;
a row the SQL cannot build is a dead letter of that version, as in Python."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from catalogue.generate import generate
from catalogue.versions import V1, V1_SQL, V3, V3_SQL
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity, execute

pytestmark = pytest.mark.integration


def open_letters(h: Harness, version: str) -> set[str]:
    with h.state_engine.connect() as conn:
        t = h.state.dead_letters
        rows = conn.execute(t.select().where(t.c.version == version, t.c.resolved_at.is_(None)))
        return {str(r._mapping["key"]) for r in rows}


def assert_twins(h: Harness, python: object, sql: object) -> None:
    assert h.documents(sql) == h.documents(python)  # type: ignore[arg-type]


def test_sql_built_documents_equal_the_python_ones_through_backfill_and_change_log(h: Harness) -> None:
    generate(h.source_engine, rows=1200, seed=31)
    execute(h, "UPDATE products SET name = NULL WHERE id IN (3, 5)")  # neither can build these
    # timestamps with and without a fraction: isoformat() writes them differently
    execute(h, "UPDATE products SET updated_at = date_trunc('second', updated_at) WHERE id % 3 = 0")
    v1, v1sql, v3, v3sql = (h.version(v) for v in (V1, V1_SQL, V3, V3_SQL))
    h.page_size = 150

    result = h.sync([v1, v1sql, v3, v3sql])

    assert result.rows_read == 1200  # one read for the four versions
    assert_parity(h, v1, v1sql, v3, v3sql)  # each equals its Python transform, row for row
    assert_twins(h, v1, v1sql)
    assert_twins(h, v3, v3sql)
    assert open_letters(h, "v1sql") == open_letters(h, "v1") == {"3", "5"}
    reasons = {r for (r,) in h.state_engine.connect().execute(text(
        f"SELECT reason FROM {h.state.dead_letters.fullname} WHERE version = 'v1sql'"
    ))}  # fmt: skip
    assert reasons == {"document_sql: PostgreSQL built no document (NULL) for this row"}

    # through the change log: an update, a fix, a hard delete, a parent rename, out of stock
    execute(h, "UPDATE products SET description = 'changed' WHERE id = 7")
    execute(h, "UPDATE products SET name = 'fixed' WHERE id = 3")
    execute(h, "DELETE FROM products WHERE id = 11")
    execute(h, "UPDATE brands SET name = name || ' renamed' WHERE id = 1")
    execute(h, "UPDATE products SET stock = 0 WHERE id IN (12, 13)")
    execute(h, "UPDATE categories SET name = name || ' (new)' WHERE id = 2")

    # the SQL-built versions in a lane of their own: only the key and the delete flag reach Python
    h.statements.clear()
    second = h.sync([v1sql, v3sql])
    h.sync([v1, v3])

    assert second.rows_read < 1200
    page = next(s for s in h.statements if "etl_doc_" in s)
    assert "NULL AS description" in page and "NULL AS categories" in page, page
    assert_parity(h, v1, v1sql, v3, v3sql)
    assert_twins(h, v1, v1sql)
    assert_twins(h, v3, v3sql)
    assert "11" not in h.documents(v1sql) and "12" not in h.documents(v3sql)  # the predicate, in SQL
    assert open_letters(h, "v1sql") == open_letters(h, "v1") == {"5"}  # fresher data resolved 3

    # and a version built wholly in SQL from nothing (its backfill, then the hand-over)
    rebuilt = h.version(V1_SQL, key="v1sqlb")
    h.sync([rebuilt])
    assert_twins(h, v1, rebuilt)
    assert open_letters(h, "v1sqlb") == {"5"}


def test_sql_built_documents_through_a_change_column(by_column: Harness) -> None:
    h = by_column
    generate(h.source_engine, rows=600, seed=32)
    v1, v1sql = h.version(V1), h.version(V1_SQL)
    h.page_size = 100

    h.sync([v1, v1sql])
    execute(h, "UPDATE products SET name = 'renamed', stock = 0 WHERE id = 9")
    h.sync([v1sql])  # alone in its lane, ahead of v1
    h.sync([v1, v1sql])

    assert_parity(h, v1, v1sql)
    assert_twins(h, v1, v1sql)
    assert h.documents(v1sql)["9"]["name"] == "renamed"
