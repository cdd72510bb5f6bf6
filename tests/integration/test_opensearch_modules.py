"""The node has the standard modules users' mappings rely on, and the demo's versions use them."""

from __future__ import annotations

from catalogue.generate import generate
from catalogue.versions import V2, V3
from tests.integration.harness import Harness
from tests.integration.test_sync import assert_parity


def test_the_node_lists_the_standard_modules_as_a_full_distribution_does(harness: Harness) -> None:
    nodes = harness.client.nodes.info(metric="plugins")["nodes"]
    (node,) = nodes.values()
    modules = {m["name"]: m for m in node["modules"]}
    assert {"analysis-common", "mapper-extras", "lang-painless", "transport-netty4"} <= set(modules)
    assert modules["analysis-common"]["extended_plugins"] == ["lang-painless"]
    assert all(m["version"] == node["version"] for m in modules.values())


def test_the_demo_versions_stem_english_search_as_you_type_and_run_painless(harness: Harness) -> None:
    h = harness
    generate(h.source_engine, rows=300, seed=31)
    v2, v3 = h.version(V2), h.version(V3)
    h.sync([v2, v3])
    assert assert_parity(h, v2, v3) > 0

    # v2: the english analyzer stems, so "running shoes" and "run shoe" are the same query
    tokens = h.client.indices.analyze(index=v2.index, body={"field": "title", "text": "running shoes"})
    assert [t["token"] for t in tokens["tokens"]] == ["run", "shoe"]

    # v3: a search box's prefix finds the product through the search_as_you_type subfields
    doc_id, doc = next((k, d) for k, d in h.documents(v3).items() if d["price"] is not None)
    word = doc["title"].split()[-1]
    prefix = word[: max(2, len(word) - 2)].lower()
    found = h.client.search(
        index=v3.index,
        body={
            "size": 1000,
            "query": {
                "multi_match": {
                    "query": prefix,
                    "type": "bool_prefix",
                    "fields": ["title", "title._2gram", "title._3gram"],
                }
            },
        },
    )
    assert doc_id in {hit["_id"] for hit in found["hits"]["hits"]}

    # lang-painless over a scaled_float doc value
    scripted = h.client.search(
        index=v3.index,
        body={
            "query": {"ids": {"values": [doc_id]}},
            "script_fields": {"cents": {"script": {"source": "Math.round(doc['price'].value * 100)"}}},
        },
    )
    (hit,) = scripted["hits"]["hits"]
    assert hit["fields"]["cents"] == [round(doc["price"] * 100)]
