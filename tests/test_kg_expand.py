"""Expansion as plain functions (graph, lineage, natural type, assembly) and as the Beam pipeline."""

import json

import pytest
from conftest import SAMPLE_ROOTS

from beam_pipelines import expand_kg
from entitynet.errors import ConfigError, KGError, OutputError
from entitynet.kg import sparql
from entitynet.kg.client import KGSource
from entitynet.kg.embedded import EmbeddedSparql
from entitynet.kg.expand import (
    ExpandConfig,
    Graph,
    Hop,
    Texts,
    assemble,
    fetch_class_sets,
    parse_claims,
    parse_hops,
)
from entitynet.kg.results import Term

WD = "http://www.wikidata.org/entity/"


def uri(q):
    return Term(WD + q, "uri")


# ---------------------------------------------------------------- plain functions


def diamond() -> Graph:
    # root Q1 -> Q2, Q3 ; Q2 -> Q4 ; Q3 -> Q4 (two parents) ; Q4 -> Q5 ; plus a cycle Q5 -> Q2
    nodes = [
        ("Q1", 0, "Q1", 50),
        ("Q2", 1, "Q1", 9),
        ("Q3", 1, "Q1", 3),
        ("Q4", 2, "Q1", 7),
        ("Q5", 3, "Q1", 5),
    ]
    hops = [
        Hop("Q2", "Q1", 9),
        Hop("Q3", "Q1", 3),
        Hop("Q4", "Q3", 7),
        Hop("Q4", "Q2", 7),
        Hop("Q5", "Q4", 5),
        Hop("Q2", "Q5", 9),
        Hop("Q9", "Q5", 1),
    ]  # Q9 was never traversed: ignored
    return Graph.build(nodes, hops)


def test_graph_parents_lineage_and_natural_type():
    g = diamond()
    assert g.parents["Q4"] == ["Q2", "Q3"] and g.parents["Q2"] == ["Q1", "Q5"]
    assert g.lineage("Q5") == ["Q4", "Q2", "Q1"]  # shortest path, ties to the lower id
    assert g.lineage("Q1") == []
    assert g.natural_type("Q5", ["Q3"]) == "Q3"
    assert g.natural_type("Q5", ["Q3", "Q4"]) == "Q4"  # nearest wins
    assert g.natural_type("Q5", ["Q77"]) == "Q1"  # none in the list: the root
    assert g.natural_type("Q1", ["Q3"]) == "Q1"
    assert g.selected(5) == ["Q1", "Q2", "Q4", "Q5"]
    assert g.label_ids_needed(["Q5"], ["Q3"]) == {"Q4", "Q2", "Q1", "Q3"}


def test_products_join_below_their_taxon():
    g = Graph.build([("Q1", 0, "Q1", 9), ("Q2", 1, "Q1", 9)], [Hop("Q2", "Q1", 9)], [Hop("Q89", "Q2", 180)])
    assert g.products == {"Q89"} and g.depth["Q89"] == 2 and g.parents["Q89"] == ["Q2"]


def test_parse_hops_keeps_items_only_and_dedupes():
    rows = [
        {"child": uri("Q2"), "parent": uri("Q1"), "sitelinks": Term(4, "literal")},
        {"child": uri("Q2"), "parent": uri("Q1"), "sitelinks": Term(6, "literal")},
        {"child": uri("Q3"), "parent": uri("Q1")},  # no sitelinks: 0
        {"child": Term("http://example.org/x", "uri"), "parent": uri("Q1")},
        {"child": uri("Q1"), "parent": uri("Q1")},
    ]
    assert parse_hops(rows) == [Hop("Q2", "Q1", 6), Hop("Q3", "Q1", 0)]


def test_assemble_picks_languages_in_order_and_drops_unlabelled():
    g = Graph.build(
        [("Q1", 0, "Q1", 9), ("Q2", 1, "Q1", 9), ("Q3", 1, "Q1", 9)], [Hop("Q2", "Q1", 9), Hop("Q3", "Q1", 9)]
    )
    texts = {
        "Q1": Texts(labels={"en": "animal"}),
        "Q2": Texts(
            labels={"de": "Löwe", "en": "lion"},
            aliases={"en": ["Lion", "big cat"]},
            descriptions={"de": "Raubkatze"},
        ),
        "Q7": Texts(labels={"en": "golden"}),
    }
    claims = parse_claims(
        [
            {"e": uri("Q2"), "p": Term("P462", "literal"), "v": uri("Q7")},
            {"e": uri("Q2"), "p": Term("P1843", "literal"), "v": Term("African lion", "literal", "en")},
            {"e": uri("Q2"), "p": Term("P1843", "literal"), "v": Term("Afrikanischer Löwe", "literal", "de")},
            {"e": uri("Q2"), "p": Term("P225", "literal"), "v": Term("Panthera leo", "literal")},
        ]
    )
    cfg = ExpandConfig(roots=("Q1",), languages=("de", "en")).resolved()
    (root, lion) = assemble(g, g.selected(0), texts, claims, cfg)  # Q3 has no label: dropped
    assert lion.label == "Löwe" and lion.description == "Raubkatze"
    assert lion.aliases == ("Lion", "big cat")  # aliases in every configured language, label excluded
    assert lion.common_names == ("Afrikanischer Löwe", "African lion")  # language priority first
    assert lion.taxon_names == ("Panthera leo",) and lion.kind == "taxon"
    assert [a.value for a in lion.attributes] == ["golden"]
    assert lion.lineage == ("animal",) and root.natural_type == "Q1"


# ---------------------------------------------------------------- the pipeline on the sample graph


def by_label(entities):
    return {e.label: e for e in entities}


def test_sample_expansion_content(sample_entities, sample_entities_dir):
    _, stats = sample_entities_dir
    ents = by_label(sample_entities)
    assert 150 <= len(sample_entities) <= 400
    lion = ents["lion"]
    assert lion.id == "Q140" and lion.natural_type_label == "mammal" and lion.rank == "species"
    assert lion.lineage == ("Panthera", "felid", "carnivoran", "mammal", "chordate", "animal")
    assert lion.taxon_names == ("Panthera leo",) and "African lion" in lion.common_names
    assert {a.value for a in lion.attributes} >= {"golden", "mane"}
    assert ents["dog"].parents == (ents["wolf"].id,)
    assert ents["English oak"].natural_type_label == "tree"  # also a subclass of tree, nearer than plant
    assert ents["ginkgo"].natural_type_label == "tree"  # a direct parent at the same depth counts
    apple = ents["apple"]
    assert apple.kind == "fruit" and apple.parents == (ents["apple tree"].id,) and apple.root == "Q756"
    # left out on purpose: individual animal, mythical creature, cultivar, thing with coordinates
    for excluded in ("Dolly", "unicorn", "Granny Smith", "Major Oak"):
        assert excluded not in ents
    # below the default 5 sitelinks
    for rare in ("Eurasian eagle-owl", "water bear", "sweet vernal grass"):
        assert rare not in ents
    assert stats["traversed"] - stats["selected"] == 3
    assert sum(stats["per_natural_type"].values()) == len(sample_entities)
    order = [(-e.sitelinks, int(e.id[1:])) for e in sample_entities]
    assert order == sorted(order)


def test_pipeline_matches_one_closure_query(sample_entities, sample_kg):
    """The level-by-level pipeline finds exactly what one transitive-closure query finds."""
    client = EmbeddedSparql([str(sample_kg)])
    cfg = ExpandConfig(roots=SAMPLE_ROOTS).resolved()
    classes = fetch_class_sets(client, cfg)
    rows = client.select(sparql.closure(cfg.roots, cfg.via, sorted(classes.excluded), cfg.exclude_with))
    closure = {r["e"].value.rsplit("/", 1)[1] for r in rows}
    links = client.select(sparql.sitelinks(sorted(closure)))
    expected = {r["e"].value.rsplit("/", 1)[1] for r in links if r["sitelinks"].value >= 5}
    got = {e.id for e in sample_entities if e.kind != "fruit"}
    assert got == expected


def test_oxigraph_server_and_embedded_file_give_identical_output(
    oxigraph_server, sample_entities_dir, tmp_path
):
    out = tmp_path / "server"
    expand_kg.run(
        KGSource(endpoint=oxigraph_server), ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(out)
    )
    embedded = (sample_entities_dir[0] / "entities.jsonl").read_bytes()
    assert (out / "entities.jsonl").read_bytes() == embedded
    saved = json.loads((out / "expand_config.json").read_text())
    assert saved["expand"]["roots"] == list(SAMPLE_ROOTS) and saved["source"] == oxigraph_server


@pytest.mark.parametrize("strategy", ["closure", "levels"])
def test_every_strategy_gives_the_same_entities(
    strategy, oxigraph_server, sample_kg, sample_entities_dir, tmp_path
):
    """One closure query or the level-by-level walk, on the embedded file and on the Oxigraph
    server: byte-identical entities.jsonl (the shared fixture ran `auto` on the file)."""
    reference = (sample_entities_dir[0] / "entities.jsonl").read_bytes()
    for name, source in (
        ("file", KGSource(kg_files=(str(sample_kg),))),
        ("server", KGSource(endpoint=oxigraph_server)),
    ):
        out = tmp_path / name
        stats = expand_kg.run(
            source, ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(out), strategy=strategy
        )
        assert (out / "entities.jsonl").read_bytes() == reference, (strategy, name)
        assert stats["strategy"] == strategy and stats["strategy_asked"] == strategy
        # the walk ends at the graph's real depth: the levels run is one query per batch of a level
        # that had parents, never max_depth + 1 levels of them
        assert stats["traversal_queries"] == (1 if strategy == "closure" else stats["max_depth_reached"] + 1)


def test_the_walk_stops_at_the_first_level_with_nothing_new():
    from entitynet.kg.traverse import walk

    edges = {
        "Q1": [Hop("Q2", "Q1", 7), Hop("Q3", "Q1", 2)],
        "Q2": [Hop("Q4", "Q2", 5)],
        "Q4": [Hop("Q2", "Q4", 7)],
    }
    asked = []

    def children_of(parents):
        asked.append(parents)
        return [h for p in parents for h in edges.get(p, ())]

    w = walk(("Q1",), {"Q1": 9}, children_of, max_depth=64)
    assert [n[:2] for n in w.nodes] == [("Q1", 0), ("Q2", 1), ("Q3", 1), ("Q4", 2)]
    assert asked == [["Q1"], ["Q2", "Q3"], ["Q4"]] and w.unexplored == 0  # the cycle back to Q2 ends it
    short = walk(("Q1",), {"Q1": 9}, children_of, max_depth=1)
    assert short.unexplored == 1 and [n[0] for n in short.nodes] == ["Q1", "Q2", "Q3"]


def test_auto_walks_level_by_level_when_the_closure_query_times_out(
    faulty_endpoint, sample_entities_dir, tmp_path
):
    faulty_endpoint.slow_seconds = 3.0
    faulty_endpoint.when = lambda q: "slow" if ")* ?root" in q else None
    src = KGSource(endpoint=faulty_endpoint.url, max_retries=1, backoff=0.01)
    stats = expand_kg.run(
        src, ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(tmp_path), closure_timeout=1.0
    )
    assert stats["strategy"] == "levels" and stats["strategy_asked"] == "auto"
    # cut off by --closure-timeout as the whole answer's deadline, not only a read's
    assert "within the total timeout of 1 s" in stats["closure_fallback_reason"]
    assert (tmp_path / "entities.jsonl").read_bytes() == (
        sample_entities_dir[0] / "entities.jsonl"
    ).read_bytes()
    closure = [r for r in faulty_endpoint.requests if ")* ?root" in r.get("query", "")]
    assert len(closure) == 1  # asked once, not retried
    with pytest.raises(KGError, match="timed out"):  # asked for by name, a timeout is an error
        expand_kg.run(
            KGSource(endpoint=faulty_endpoint.url, max_retries=0, read_timeout=1.0),
            ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10),
            str(tmp_path / "closure"),
            strategy="closure",
        )
    assert not (tmp_path / "closure").exists()


def test_world_mode_takes_subclasses_only(sample_kg, tmp_path):
    stats = expand_kg.run(
        KGSource(kg_files=(str(sample_kg),)),
        ExpandConfig(mode="world", roots=("Q756",), max_depth=4),
        str(tmp_path),
    )
    from entitynet.records import Entity, read_jsonl

    ents = by_label(read_jsonl(tmp_path / "entities.jsonl", Entity))
    # taxa hang below plant by P171 and are not subclasses: only tree and its subclasses (oak, ...) remain
    assert {"plant", "tree", "oak", "Scots pine"} <= set(ents) and "English oak" not in ents
    assert "flowering plant" not in ents and "tomato" not in ents and "apple" not in ents
    assert all(e.lineage[-2:] in (("tree", "plant"), ("plant",)) for e in ents.values() if e.depth)
    assert stats["products"] == 0


def test_max_depth_too_small_is_an_error_and_writes_nothing(sample_kg, tmp_path):
    with pytest.raises(KGError, match="reached max depth 2 with .* still unexplored; raise --max-depth"):
        expand_kg.run(
            KGSource(kg_files=(str(sample_kg),)), ExpandConfig(roots=SAMPLE_ROOTS, max_depth=2), str(tmp_path)
        )
    assert list(tmp_path.iterdir()) == []


def test_unknown_root_is_refused_before_any_work(sample_kg, tmp_path):
    with pytest.raises(ConfigError, match="root Q999999 not found in .*sample_kg.ttl"):
        expand_kg.run(
            KGSource(kg_files=(str(sample_kg),)), ExpandConfig(roots=("Q729", "Q999999")), str(tmp_path)
        )


def test_unwritable_output(sample_kg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create output directory"):
        expand_kg.run(
            KGSource(kg_files=(str(sample_kg),)), ExpandConfig(roots=SAMPLE_ROOTS), str(blocker / "out")
        )


def test_endpoint_failing_mid_pipeline_leaves_no_output(faulty_endpoint, tmp_path):
    # The root check succeeds, then every query fails: retries, then one clear error, no files.
    faulty_endpoint.script = ["ok", "ok"] + ["500"] * 200
    src = KGSource(endpoint=faulty_endpoint.url, max_retries=1, backoff=0.01)
    with pytest.raises(KGError, match=f"SPARQL endpoint {faulty_endpoint.url} failed after 2 attempts"):
        expand_kg.run(src, ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert len(faulty_endpoint.requests) >= 4


def test_worker_processes_give_the_same_output(sample_kg, sample_entities_dir, tmp_path):
    """Nothing relies on one process: two DirectRunner worker processes write the same file."""
    expand_kg.run(
        KGSource(kg_files=(str(sample_kg),)),
        ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10),
        str(tmp_path),
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    assert (tmp_path / "entities.jsonl").read_bytes() == (
        sample_entities_dir[0] / "entities.jsonl"
    ).read_bytes()
    # a re-run into the same directory replaces the files and leaves nothing else behind
    expand_kg.run(
        KGSource(kg_files=(str(sample_kg),)), ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(tmp_path)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".entitynet-output.json",  # whose output the directory is (entitynet.locks.OUTPUT_MARKER)
        "entities.jsonl",
        "expand_config.json",
        "expand_stats.json",
    ]
    assert (tmp_path / "entities.jsonl").read_bytes() == (
        sample_entities_dir[0] / "entities.jsonl"
    ).read_bytes()


def test_pipelines_run_on_the_local_runner_without_trying_prism(sample_kg, tmp_path, caplog):
    """Beam's DirectRunner first tries its Prism runner, which downloads a binary from the
    internet; with no --runner flag our pipelines go straight to the local batch runner."""
    import logging

    from beam_pipelines.common import make_pipeline

    caplog.set_level(logging.INFO, logger="apache_beam")
    expand_kg.run(
        KGSource(kg_files=(str(sample_kg),)), ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(tmp_path)
    )
    assert (tmp_path / "entities.jsonl").exists()
    assert not [r for r in caplog.records if "prism" in r.getMessage().lower()]
    assert type(make_pipeline([]).runner).__name__ == "FnApiRunner"
    assert type(make_pipeline(["--runner=DirectRunner"]).runner).__name__ != "FnApiRunner"
