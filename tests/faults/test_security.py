"""Least privilege, quoted identifiers, and OpenSearch behind basic auth and TLS."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, Table, Text, func, select, text
from sqlalchemy.exc import ProgrammingError

from catalogue.generate import generate
from catalogue.source import CATALOGUE
from catalogue.versions import V1, V3
from etl_core import ConfigError, IndexVersion, Source
from etl_core.operations.connect import Connections
from etl_core.read.extract import Extractor
from etl_core.settings import Settings, make_engine
from tests.faults.proxy import FaultProxy
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity

pytestmark = pytest.mark.integration


@pytest.fixture
def reader_role(harness: Harness, admin_engine: Engine) -> Iterator[tuple[str, str]]:
    """A login role that may SELECT the catalogue and its change log, and nothing else: no
    pg_read_all_stats, no superuser; the change log's bound needs no privilege."""
    name, password = f"reader_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    db = harness.source_engine.url.database
    with admin_engine.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO {name}'))
    with harness.source_engine.begin() as conn:
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {name}"))
        conn.execute(text(f"GRANT SELECT ON products, brands, categories, product_categories TO {name}"))
        # and read access to the change log the generated triggers write (nothing else of etl_state)
        conn.execute(text(f"GRANT USAGE ON SCHEMA etl_state TO {name}"))
        conn.execute(text(f"GRANT SELECT ON etl_state.catalogue_changes TO {name}"))
    try:
        yield name, password
    finally:
        with harness.source_engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {name}"))
        with admin_engine.connect() as conn:
            conn.execute(text(f'REVOKE CONNECT ON DATABASE "{db}" FROM {name}'))
            conn.execute(text(f"DROP ROLE {name}"))


def test_extraction_works_under_a_read_only_role(harness: Harness, reader_role: tuple[str, str]) -> None:
    h = harness
    generate(h.source_engine, rows=500, seed=61)
    name, password = reader_role
    reader = make_engine(h.source_engine.url.set(username=name, password=password))
    try:
        with pytest.raises(ProgrammingError, match="permission denied"), reader.begin() as conn:
            conn.execute(text("UPDATE products SET stock = 0 WHERE id = 1"))
        versions = [h.version(V1), h.version(V3)]
        # the read-only role reads the source; state (cursors, dead letters) goes to its own
        # schema through another connection, as STATE_DATABASE_URL allows
        h.sync(versions, extractor=Extractor(reader, CATALOGUE, page_size=100))
        assert_parity(h, *versions)
    finally:
        reader.dispose()


def test_hostile_identifiers_are_quoted(harness: Harness) -> None:
    h = harness
    meta = MetaData()
    hostile = Table(
        'items"; DROP TABLE brands; --',
        meta,
        Column("select", Integer, primary_key=True),
        Column('na"me', Text),
        Column("order by", DateTime(timezone=True), server_default=func.now(), nullable=False),
    )
    meta.create_all(h.source_engine)
    with h.source_engine.begin() as conn:
        conn.execute(hostile.insert(), [{"select": i, 'na"me': f"n{i}"} for i in range(1, 51)])

    @dataclass(frozen=True, slots=True)
    class Item:
        select: int
        name: str
        order_by: datetime

    sel = select(
        hostile.c["select"], hostile.c['na"me'].label("name"), hostile.c["order by"].label("order_by")
    )
    source = Source("hostile", sel, Item, key="select", changed="order_by")
    version: IndexVersion[Item] = IndexVersion("v1", f"{h.prefix}_hostile", lambda i: {"name": i.name})
    h.sync([version], extractor=Extractor(h.source_engine, source, page_size=20))
    assert h.documents(version) == {str(i): {"name": f"n{i}"} for i in range(1, 51)}
    with h.source_engine.connect() as conn:  # and nothing was injected
        assert conn.execute(text("SELECT count(*) FROM brands")).scalar_one() == 0
        assert conn.execute(text("SELECT to_regclass('public.brands')")).scalar_one() == "brands"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_opensearch_basic_auth_and_tls(
    harness: Harness, settings: Settings, certificate: tuple[Path, Path]
) -> None:
    h = harness
    generate(h.source_engine, rows=300, seed=62)
    cert, key = certificate
    password = f"os-{uuid.uuid4().hex}"
    versions = [h.version(V1)]
    source_url = h.source_engine.url.render_as_string(hide_password=False)
    with FaultProxy(
        settings.opensearch_url, user="etl", password=password, certfile=cert, keyfile=key
    ) as proxy:

        def connections(**env: str) -> Connections:
            return Connections(
                Settings.from_env(
                    {
                        "SOURCE_DATABASE_URL": source_url,
                        "OPENSEARCH_URL": proxy.url,
                        "OPENSEARCH_USER": "etl",
                        "OPENSEARCH_PASSWORD": password,
                        "OPENSEARCH_CA_CERTS": str(cert),
                        **env,
                    }
                ),
                CATALOGUE.name,
            )

        good = connections()
        h.sync(versions, extractor=good.extractor(CATALOGUE), sink=good.sink)
        assert_parity(h, *versions)
        good.close()

        wrong = connections(OPENSEARCH_PASSWORD="not-it")
        with pytest.raises(ConfigError, match=r"refused the credentials \(401\).*OPENSEARCH_USER"):
            h.sync([h.version(V1, "w1")], extractor=wrong.extractor(CATALOGUE), sink=wrong.sink)
        assert proxy.refused_auth >= 1

        untrusted = connections(OPENSEARCH_CA_CERTS="")
        with pytest.raises(ConfigError, match=r"TLS handshake failed.*OPENSEARCH_CA_CERTS"):
            h.sync([h.version(V1, "w2")], extractor=untrusted.extractor(CATALOGUE), sink=untrusted.sink)
    assert h.cursors.load(["w1", "w2"]) == {"w1": None, "w2": None}
