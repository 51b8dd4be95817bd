"""Entity links: evidence for every candidate link, the pruning rule, and what it does on the sample
web, where the entity of every image is known."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from factories import record

from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest, shards
from entitynet.errors import ConfigError
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.links import Linker, LinkRule, decide, kept_ids, link_stats, prune
from entitynet.records import (
    Entity,
    EntityLink,
    Query,
    decode_image,
    encode_image,
    merge_images,
    query_id,
)
from entitynet.sampleweb.server import SampleWeb
from entitynet.sampleweb.truth import link_quality
from entitynet.text.queries import build_queries

FOX = Entity(id="Q8332", label="red fox", aliases=("Vulpes vulpes",))
WOLF = Entity(id="Q18498", label="wolf")


def q(kind: str, text: str, *ids: str) -> Query:
    return Query(id=query_id(kind, text), text=text, kind=kind, entity_ids=ids)


NOUN_FOX, NOUN_WOLF = q("noun", "red fox", FOX.id), q("noun", "wolf", WOLF.id)
SHARED = q("attribute", "orange mammal", FOX.id, WOLF.id, "Q1", "Q2", "Q3")


def test_the_rule():
    rule = LinkRule(max_rank=10, max_finders=3)
    assert decide(["attribute"], 50, True, 99, rule) == "alt_text"  # the alt text names it: kept
    assert decide(["noun"], 0, False, 4, rule) == "generic"  # found by too many entities
    assert decide(["noun"], 9, False, 3, rule) == "name_query"
    assert decide(["alias", "attribute-noun"], 2, False, 1, rule) == "name_query"
    assert decide(["noun"], 10, False, 1, rule) == "weak"  # deep in the results
    assert decide(["noun"], -1, False, 1, rule) == "weak"  # rank unknown
    assert decide(["attribute"], 0, False, 1, rule) == "weak"  # a shared type-attribute query
    assert decide(["noun"], 0, False, 1, rule, alt_other=True) == "contradicted"
    assert decide(["noun"], 0, True, 1, rule, alt_other=True) == "alt_text"
    with pytest.raises(ConfigError, match="--link-max-rank"):
        LinkRule(max_rank=0)


def test_linker_gathers_the_evidence_and_prunes():
    linker = Linker([NOUN_FOX, NOUN_WOLF, SHARED], [FOX, WOLF], LinkRule(max_rank=10, max_finders=3))
    ids = (NOUN_FOX.id, NOUN_WOLF.id, SHARED.id)
    links = {x.entity: x for x in linker.links(ids, (3, 15, 0), ["Vulpes vulpes at dusk"])}
    assert set(links) == {FOX.id, WOLF.id, "Q1", "Q2", "Q3"}
    fox = links[FOX.id]
    assert fox.kinds == ("attribute", "noun") and fox.rank == 0 and fox.alt_text and fox.why == "alt_text"
    assert links[WOLF.id] == EntityLink(WOLF.id, ("attribute", "noun"), 0, False, "generic", alt_other=True)
    assert all(links[e].why == "generic" for e in ("Q1", "Q2", "Q3"))
    # without the shared query: one finder each, the wolf's own noun query at rank 15 is too deep
    links = {x.entity: x for x in linker.links(ids[:2], (3, 15), ["stock photo"])}
    assert links[FOX.id].why == "name_query" and links[WOLF.id].why == "weak"
    # an alt text that names another entity contradicts a link it does not support
    links = {x.entity: x for x in linker.links(ids[:2], (3, 2), ["a wolf at night"])}
    assert (
        links[WOLF.id].why == "alt_text" and links[FOX.id].why == "contradicted" and links[FOX.id].alt_other
    )
    # an alt text naming more entities than max_finders is a list, not a caption: it names none
    many = [FOX, WOLF, *(Entity(id=f"Q{i}", label=f"animal{i}") for i in (1, 2, 3))]
    lister = Linker([NOUN_FOX, NOUN_WOLF], many, LinkRule(max_rank=10, max_finders=3))
    listed = "icons: red fox, wolf, animal1, animal2, animal3"
    links = {x.entity: x for x in lister.links(ids[:2], (3, 2), [listed])}
    assert [links[e].why for e in (FOX.id, WOLF.id)] == ["name_query", "name_query"]
    assert not any(x.alt_text or x.alt_other for x in links.values())
    # names come from the noun and alias queries when no entities are given
    by_queries = Linker([NOUN_FOX, q("alias", "Vulpes vulpes", FOX.id)])
    assert by_queries.links((NOUN_FOX.id,), (30,), ["a Vulpes vulpes"])[0].alt_text
    # apply(): evidence on the record, kept links as entity_ids
    rec = record(
        alt_texts=("stock photo",),
        query_ids=ids[:2],
        query_ranks=(3, 15),
        entity_ids=(FOX.id, WOLF.id),
        urls=(),
    )
    got = linker.apply(rec)
    assert got.entity_ids == (FOX.id,)  # by rank; the wolf's result was too deep
    assert [(x.entity, x.why) for x in got.links] == [(WOLF.id, "weak"), (FOX.id, "name_query")]
    assert linker.apply(replace(rec, alt_texts=("wolf pack",))).entity_ids == (WOLF.id,)  # fox contradicted
    assert linker.apply(replace(rec, alt_texts=("untitled",), query_ranks=(30, 30))).entity_ids == ()
    # the linker crosses to Beam workers without its automaton
    import pickle

    again = pickle.loads(pickle.dumps(linker))
    assert again.links(ids, (3, 15, 0), ["Vulpes vulpes"]) == linker.links(ids, (3, 15, 0), ["Vulpes vulpes"])


def test_links_survive_the_shard_codec_and_merge_with_duplicates():
    a = EntityLink(FOX.id, ("noun",), 4, False, "name_query")
    b = EntityLink(FOX.id, ("alias",), 2, True, "alt_text")
    c = EntityLink(WOLF.id, ("attribute",), 7, False, "contradicted", alt_other=True)
    r1 = record(
        "k1",
        "http://a/1",
        jpeg=b"\xff\xd8x",
        width=2,
        height=2,
        query_ids=("q1", "q2"),
        query_ranks=(4, 9),
        links=(a, c),
        entity_ids=(FOX.id,),
        urls=(),
    )
    r2 = replace(r1, key="k2", url="http://b/2", query_ids=("q2", "q3"), query_ranks=(1, 2), links=(b,))
    assert decode_image(encode_image(r1)) == r1
    merged = merge_images(r1, [r2])
    assert merged.query_ids == ("q1", "q2", "q3") and merged.query_ranks == (4, 1, 2)
    assert merged.links == (c, EntityLink(FOX.id, ("alias", "noun"), 2, True, "alt_text"))
    assert decode_image(encode_image(merged)) == merged
    # a new decision over the merged evidence
    assert [x.why for x in prune(merged.links, LinkRule(max_finders=1))] == ["generic", "alt_text"]
    assert kept_ids(prune(merged.links, LinkRule())) == (FOX.id,)


def test_an_image_with_no_kept_link_is_dropped_and_accounted():
    linker = Linker([NOUN_FOX], [FOX])
    rec = record(
        url="http://x/1.jpg", alt_texts=("IMG_1234",), query_ids=(NOUN_FOX.id,), query_ranks=(40,), urls=()
    )
    dup = replace(rec, url="http://y/2.jpg")
    merged, outcomes = harvest.merge_duplicates([rec, dup], linker)
    assert merged is None
    assert [(o.url, o.outcome) for o in outcomes] == [
        ("http://x/1.jpg", "unlinked"),
        ("http://y/2.jpg", "duplicate"),
    ]
    assert "no entity link kept of 1: Q8332 (weak)" in outcomes[0].detail
    keep = Linker([NOUN_FOX], [FOX], LinkRule(keep_unlinked=True))
    merged, outcomes = harvest.merge_duplicates([rec, dup], keep)
    assert merged is not None and merged.entity_ids == () and [o.outcome for o in outcomes] == ["duplicate"]


@pytest.fixture(scope="module")
def linked_world(sample_entities, tmp_path_factory):
    """The 60 best-known sample entities harvested from the sample web, keeping unlinked images so
    that every candidate link can be scored against the truth."""
    entities = [e for e in sample_entities if e.depth > 0][:60]
    queries = build_queries(entities)
    out = tmp_path_factory.mktemp("linked")
    opts = harvest.HarvestOptions(
        fetch=FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01, retries=0),
        num_shards=1,
        links=LinkRule(keep_unlinked=True),
    )
    with SampleWeb(entities, seed=3) as web:
        spec = harvest.SearchSpec(url=web.base_url, max_results=20, requests_per_second=0)
        stats = harvest_pipeline.run(queries, spec, opts, str(out), entities=entities)
        corpus, lineage = web.corpus, web.lineage
    recs = list(
        itertools.chain.from_iterable(shards.iter_records(out, s) for s in ("train", "validation", "test"))
    )
    return stats, recs, corpus, lineage, out


def test_pruning_on_the_sample_web_raises_precision_and_keeps_recall(linked_world):
    stats, recs, corpus, lineage, out = linked_world
    q = link_quality(corpus, lineage, recs)
    before, after = q["before"], q["after"]
    print(json.dumps(q))
    # generic pages and shared queries make many wrong links; pruning removes most of them
    assert before["links_per_image"] > 1.3 and after["links_per_image"] < 1.15
    assert after["precision"] >= 0.85 and after["precision"] >= before["precision"] + 0.12
    # recall: images whose (wrong) alt text names another entity lose their own link
    assert after["recall"] >= 0.93 and before["recall"] >= 0.99
    generic = [r for r in recs if any("/img/g-" in u for u in r.urls)]
    # a collage found by more than 3 entities keeps no link (few queries found it: a few stay)
    assert generic and sum(not r.entity_ids for r in generic) >= 0.8 * len(generic)
    assert all(x.why == "generic" for r in generic if len(r.links) > 3 for x in r.links if not x.alt_text)
    # the counters, the stats file and the data card agree with the records
    assert stats["links"] == link_stats(recs)
    assert json.loads((out / "harvest_stats.json").read_text())["links"] == stats["links"]
    card = (out / "DATACARD.md").read_text()
    assert "## Entity links" in card and f"| found by queries | {stats['links']['links_found']:,} |" in card
    assert json.loads((out / "harvest_config.json").read_text())["harvest"]["links"]["max_finders"] == 3


def test_dropping_unlinked_images_is_the_default(linked_world, tmp_path):
    _, recs, corpus, lineage, _ = linked_world
    unlinked = [r for r in recs if not r.entity_ids]
    assert unlinked and all(x.why in ("generic", "contradicted", "weak") for r in unlinked for x in r.links)
    rule = LinkRule()
    assert not rule.keep_unlinked
    kept = [r for r in recs if kept_ids(prune(r.links, rule))]
    assert len(kept) == len(recs) - len(unlinked)
