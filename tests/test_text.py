"""Search queries and caption weights."""

import numpy as np
import pytest

from entitynet.records import Attribute, Entity, Query, query_id
from entitynet.text.captions import CaptionWeights, captions, sample
from entitynet.text.queries import EXCLUDE_TERMS, QueryConfig, budget, build_queries


def ent(i, label, sitelinks=50, **kw):
    kw.setdefault("natural_type", "Q5113")
    kw.setdefault("natural_type_label", "bird")
    kw.setdefault("kind", "taxon")
    return Entity(id=f"Q{i}", label=label, sitelinks=sitelinks, **kw)


def test_budget_grows_with_sitelinks_and_is_capped():
    cfg = QueryConfig()
    values = [budget(n, cfg) for n in (0, 5, 50, 500, 5000, 10**9)]
    assert values == sorted(values) and values[0] == cfg.base_budget and values[-1] == cfg.max_per_entity
    assert budget(500, cfg) > budget(5, cfg)


def test_query_kinds_modifiers_and_order():
    raven = ent(
        1,
        "common raven",
        aliases=("raven",),
        taxon_names=("Corvus corax",),
        attributes=(Attribute("P462", "black", "Q23445"), Attribute("P527", "beak", "Q9")),
    )
    qs = build_queries([raven])
    assert [(q.kind, q.text) for q in qs] == [
        ("noun", "common raven"),
        ("alias", "raven"),
        ("alias", "Corvus corax"),
        ("attribute-noun", "black common raven"),
        ("attribute-noun", "common raven beak"),
        ("attribute", "black bird"),
        ("attribute", "bird beak"),
    ][: budget(50, QueryConfig())]
    noun = qs[0]
    assert noun.photo_type == "photo" and noun.exclude_terms == EXCLUDE_TERMS
    assert noun.or_terms == ("raven", "Corvus corax", "bird")  # names and natural type, as the reference
    assert all(q.id == query_id(q.kind, q.text) for q in qs)


def test_rare_entity_gets_fewer_queries():
    names = tuple(f"name{i}" for i in range(15))
    rare, famous = ent(1, "a", sitelinks=5, aliases=names), ent(2, "b", sitelinks=5000, aliases=names)
    qs = build_queries([rare, famous])
    n_rare = sum("Q1" in q.entity_ids for q in qs)
    n_famous = sum("Q2" in q.entity_ids for q in qs)
    assert n_rare == budget(5, QueryConfig()) < n_famous == budget(5000, QueryConfig())


def test_duplicates_merge_across_entities_keeping_the_better_kind():
    a = ent(1, "robin", attributes=(Attribute("P462", "orange", "Q7"),))
    b = ent(2, "American robin", aliases=("Robin",), attributes=(Attribute("P462", "orange", "Q7"),))
    qs = build_queries([b, a])
    robin = [q for q in qs if q.text.lower() == "robin"]
    assert len(robin) == 1 and robin[0].kind == "noun" and robin[0].entity_ids == ("Q2", "Q1")
    orange_bird = [q for q in qs if q.text == "orange bird"]
    assert (
        len(orange_bird) == 1
        and orange_bird[0].entity_ids == ("Q2", "Q1")
        and orange_bird[0].kind == "attribute"
    )
    assert len({q.id for q in qs}) == len(qs)
    assert build_queries([b, a]) == qs  # deterministic


def test_sample_queries_cover_every_entity(sample_entities):
    qs = build_queries(sample_entities)
    covered = {e for q in qs for e in q.entity_ids}
    assert covered == {e.id for e in sample_entities}
    assert {q.kind for q in qs} == {"noun", "alias", "attribute-noun", "attribute"}


# ---------------------------------------------------------------- captions


def by_text(caps):
    return {c.text: c.weight for c in caps}


def test_noun_caption_weights_follow_the_reference():
    parent = ent(2, "thrush", aliases=("Turdidae",), description="family of birds")
    robin = ent(
        1,
        "American robin",
        aliases=("robin",),
        common_names=("red robin",),
        description="migratory songbird",
        parents=("Q2",),
    )
    w = by_text(captions(robin, None, [parent]))
    # unnormalised: query 0.4; own synonyms 0.6*0.9/3 each; parent synonyms 0.6*0.1/2 each;
    # descriptions 0.1*0.9 and 0.1*0.1. "American robin" is both query and synonym: keeps 0.4.
    raw = {
        "American robin": 0.4,
        "robin": 0.18,
        "red robin": 0.18,
        "thrush": 0.03,
        "Turdidae": 0.03,
        "migratory songbird": 0.09,
        "family of birds": 0.01,
    }
    total = sum(raw.values())
    assert w == pytest.approx({k: v / total for k, v in raw.items()})


def test_world_entities_give_parents_a_larger_share():
    parent = ent(2, "vehicle", kind="class")
    car = ent(1, "car", aliases=("automobile",), kind="class")
    w = by_text(captions(car, None, [parent]))
    assert w["vehicle"] / w["automobile"] == pytest.approx((0.6 * 0.2 / 1) / (0.6 * 0.8 / 2))


def test_single_synonym_and_query_both_get_half():
    solo = ent(1, "okapi", description="")
    w = captions(solo, None, [])
    assert by_text(w) == {"okapi": 1.0}
    q = Query(id="x", text="okapi photo", kind="noun", entity_ids=("Q1",))
    assert by_text(captions(solo, q, [])) == pytest.approx({"okapi photo": 0.5, "okapi": 0.5})


def test_attribute_caption_weights():
    lion = ent(1, "lion", aliases=("Panthera leo",), description="big cat", kind="taxon")
    q = Query(
        id="x", text="lion mane", kind="attribute-noun", entity_ids=("Q1",), attribute="mane", property="P527"
    )
    w = by_text(captions(lion, q))
    raw = {
        "lion mane": 1.0,
        "lion": 0.1,
        "Panthera leo": 0.1,
        "Panthera leo mane": 0.1 + 0.2,
        "mane": 0.2,
        "big cat": 0.05,
    }
    # "Panthera leo mane" is both a pseudo-query (0.1) and the query with the name replaced (0.2): max kept
    raw["Panthera leo mane"] = 0.2
    total = sum(raw.values())
    assert w == pytest.approx({k: v / total for k, v in raw.items()})
    colour = Query(
        id="y", text="golden lion", kind="attribute", entity_ids=("Q1",), attribute="golden", property="P462"
    )
    assert "golden Panthera leo" in by_text(captions(lion, colour))


def test_weights_are_configurable_and_normalised():
    lion = ent(1, "lion", aliases=("Panthera leo",), description="big cat")
    caps = captions(lion, None, [], CaptionWeights(noun_descriptions=0.0))
    assert "big cat" not in by_text(caps) and sum(c.weight for c in caps) == pytest.approx(1.0)


def test_sampling_is_reproducible_and_follows_weights():
    lion = ent(1, "lion", aliases=("Panthera leo",), description="big cat")
    caps = captions(lion)
    draws = [sample(caps, np.random.default_rng(7)) for _ in range(3)]
    assert len(set(draws)) == 1
    rng = np.random.default_rng(0)
    counts = {c.text: 0 for c in caps}
    for _ in range(4000):
        counts[sample(caps, rng)] += 1
    for c in caps:
        assert counts[c.text] / 4000 == pytest.approx(c.weight, abs=0.03)
