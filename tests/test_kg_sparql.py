"""Query builders: validated ids, escaped literals, and queries that a real SPARQL engine runs."""

import pyoxigraph as ox
import pytest

from entitynet.errors import ConfigError
from entitynet.kg import ids, sparql
from entitynet.kg.embedded import EmbeddedSparql
from entitynet.kg.expand import ExpandConfig


@pytest.mark.parametrize(
    "bad", ["X12", "Q", "Q0", "q140", "Q140 }", "Q1 . ?s ?p ?o", "", "P31", None, "Q12a"]
)
def test_malformed_entity_ids_are_refused(bad):
    with pytest.raises(ConfigError, match="malformed root"):
        ids.qid(bad, "root")


def test_property_and_language_validation():
    assert ids.pid("P171") == "P171"
    for bad in ("Q171", "P", "P1 ; ?x"):
        with pytest.raises(ConfigError):
            ids.pid(bad)
    assert ids.lang("EN") == "en"
    with pytest.raises(ConfigError):
        ids.lang('en") || true || ("')


def test_config_validates_every_identifier():
    with pytest.raises(ConfigError, match="malformed root 'animal'"):
        ExpandConfig(roots=("animal",)).resolved()
    with pytest.raises(ConfigError, match="natural type"):
        ExpandConfig(natural_types=("Q1", "x")).resolved()
    with pytest.raises(ConfigError, match="unknown mode"):
        ExpandConfig(mode="galaxy").resolved()
    cfg = ExpandConfig(mode="world").resolved()
    assert len(cfg.roots) == 21 and cfg.via == ("P279",) and cfg.exclude_classes == ()


def test_escaped_literal_cannot_break_out_of_a_query():
    hostile = 'x" } ; DROP ALL ; SELECT * WHERE { ?s ?p "'
    store = ox.Store()
    store.add(ox.Quad(ox.NamedNode("http://e/a"), ox.NamedNode("http://e/name"), ox.Literal(hostile)))
    q = f"SELECT ?s WHERE {{ ?s <http://e/name> {ids.escape_literal(hostile)} }}"
    rows = list(store.query(q))
    assert [r["s"].value for r in rows] == ["http://e/a"]
    assert ids.escape_literal('a\\b"c\nd') == '"a\\\\b\\"c\\nd"'


def test_builders_run_on_oxigraph(sample_kg):
    client = EmbeddedSparql([str(sample_kg)])
    hop = client.select(sparql.children(["Q7377"], ["P171", "P279", "P31"], ["P625"]))
    children = {ids.id_from_iri(r["child"].value) for r in hop}
    assert children  # mammal has orders below it
    assert all(r["parent"].value.endswith("/Q7377") for r in hop)
    links = client.select(sparql.sitelinks(["Q140", "Q146"]))
    assert sorted(r["sitelinks"].value for r in links) == [230, 240]
    texts = client.select(sparql.texts(["Q140"], ["de"]))
    assert [(r["kind"].value, r["text"].value, r["text"].lang) for r in texts] == [("label", "Löwe", "de")]
    claims = client.select(sparql.claims(["Q140"], ["P225", "P105"]))
    assert {(r["p"].value, r["v"].value) for r in claims} == {
        ("P225", "Panthera leo"),
        ("P105", "http://www.wikidata.org/entity/Q7432"),
    }
    assert "VALUES ?root { wd:Q729 }" in sparql.closure(["Q729"], ["P171"])


def test_exclusions_in_the_hop_query(sample_kg):
    from entitynet.kg.expand import ClassSets, fetch_class_sets, parse_hops

    client = EmbeddedSparql([str(sample_kg)])
    rows = client.select(sparql.children(["Q726"], ["P171", "P279", "P31"]))
    unicorn = {ids.id_from_iri(r["child"].value) for r in rows}
    assert len(unicorn) == 1  # without exclusions the mythical creature is a child of horse
    assert [h.child for h in parse_hops(rows)] == sorted(unicorn)
    classes = fetch_class_sets(client, ExpandConfig().resolved())
    assert {"Q5", "Q24334299", "Q795052", "Q4886"} <= classes.excluded
    assert parse_hops(rows, classes.excluded) == []
    assert parse_hops(rows, ClassSets().excluded, required=frozenset({"Q3314483"})) == []
    # P625 is checked inside the query: the individual oak with coordinates is left out
    (english_oak,) = [
        r["e"].value.rsplit("/", 1)[1]
        for r in client.select(sparql.PREFIXES + 'SELECT ?e WHERE { ?e rdfs:label "English oak"@en }')
    ]
    with_coords = client.select(sparql.children([english_oak], ["P171", "P279", "P31"]))
    assert len({r["child"].value for r in with_coords}) == 1
    assert client.select(sparql.children([english_oak], ["P171", "P279", "P31"], ["P625"])) == []
