"""Search queries from entities: what the image-search stage asks for.

Kinds, in priority order (a text produced by several kinds keeps the first):

- noun: the entity's label ("lion")
- alias: aliases, common names and taxon names ("African lion", "Panthera leo")
- attribute-noun: an attribute phrase with the entity ("golden lion", "lion mane"), from the
  knowledge graph's attribute properties or from an LLM
- attribute: an attribute with the entity's natural type ("golden mammal"), shared by every
  entity that has it, as the reference's living-things attribute queries are

Each entity gets a budget of queries that grows with its sitelinks. Search modifiers stay
fields (photo type, exclude terms, or-terms) that each search backend sends when its API can
express them and drops otherwise (`entitynet queries --exclude-terms/--no-exclude-terms/
--photo-type/--no-or-terms`; the mapping is in `entitynet/search/web.py`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from entitynet.records import QUERY_KINDS, Attribute, Entity, Query, normalise_text, query_id, unique_texts

# The reference's exclude terms for web image search.
EXCLUDE_TERMS = ("drawing", "clipart", "illustration", "cartoon", "vector", "painting")

# How an attribute of each property reads next to a name: "{a}" attribute, "{n}" name.
PHRASES = {
    "P462": "{a} {n}",  # colour: "golden lion"
    "P527": "{n} {a}",  # has part: "lion mane"
    "P186": "{a} {n}",  # made from material: "wooden chair"
    "P1552": "{a} {n}",  # has characteristic: "venomous snake"
    "P366": "{n} for {a}",  # has use: "goat for milk production"
    "P2283": "{n} with {a}",  # uses: "boat with sail"
    "llm": "{n} {a}",
}
# Properties whose attributes also make "attribute + natural type" queries.
TYPE_ATTRIBUTES = ("P462", "P1552", "P186", "P527", "llm")


@dataclass(frozen=True)
class QueryConfig:
    base_budget: int = 3
    budget_per_decade: float = 3.0  # extra queries per factor of 10 in sitelinks
    max_per_entity: int = 20
    photo_type: str | None = "photo"
    exclude_terms: tuple[str, ...] = EXCLUDE_TERMS
    attribute_queries: bool = True
    living: bool = True  # noun queries get names and natural type as or-terms, as the reference does
    or_terms: bool = True  # False: no query carries or-terms


def budget(sitelinks: int, cfg: QueryConfig) -> int:
    extra = int(cfg.budget_per_decade * math.log10(1 + max(0, sitelinks)))
    return max(1, min(cfg.max_per_entity, cfg.base_budget + extra))


def attribute_phrase(attr: Attribute, name: str) -> str:
    if attr.query:
        return attr.query
    return PHRASES.get(attr.property, "{a} {n}").format(a=attr.value, n=name)


@dataclass(frozen=True)
class _Candidate:
    kind: str
    text: str
    attribute: str | None = None
    property: str | None = None
    or_terms: tuple[str, ...] = ()


def candidates(entity: Entity, cfg: QueryConfig) -> list[_Candidate]:
    """This entity's queries in priority order, before the budget and cross-entity merging."""
    names = entity.synonyms()
    out = [
        _Candidate(
            "noun",
            entity.label,
            or_terms=tuple(names[1:] + [entity.natural_type_label]) if cfg.living else (),
        )
    ]
    out += [_Candidate("alias", n) for n in names[1:]]
    for a in entity.attributes:
        text = attribute_phrase(a, entity.label)
        others = tuple(n for n in names if n.casefold() not in text.casefold())
        out.append(_Candidate("attribute-noun", text, a.value, a.property, others))
    if cfg.attribute_queries and entity.natural_type_label and entity.natural_type != entity.id:
        for a in entity.attributes:
            if a.property in TYPE_ATTRIBUTES and not a.query:
                text = PHRASES.get(a.property, "{a} {n}").format(a=a.value, n=entity.natural_type_label)
                out.append(_Candidate("attribute", text, a.value, a.property))
    return out


def build_queries(entities: Iterable[Entity], cfg: QueryConfig = QueryConfig()) -> list[Query]:
    """Queries for all entities: budgeted per entity, merged across entities by normalised text.

    Deterministic: the same entities in the same order give the same queries, ids and order.
    """
    merged: dict[str, dict] = {}
    order: list[str] = []
    rank = {k: i for i, k in enumerate(QUERY_KINDS)}
    for e in entities:
        seen_here: set[str] = set()
        for c in candidates(e, cfg):
            key = normalise_text(c.text)
            if not key or key in seen_here:
                continue
            if len(seen_here) >= budget(e.sitelinks, cfg):
                break
            seen_here.add(key)
            slot = merged.get(key)
            if slot is None:
                merged[key] = {"c": c, "entities": [e.id]}
                order.append(key)
            else:
                if e.id not in slot["entities"]:
                    slot["entities"].append(e.id)
                if rank[c.kind] < rank[slot["c"].kind]:
                    slot["c"] = c
    out = []
    for key in order:
        c, ents = merged[key]["c"], merged[key]["entities"]
        out.append(
            Query(
                id=query_id(c.kind, c.text),
                text=c.text,
                kind=c.kind,
                entity_ids=tuple(ents),
                attribute=c.attribute,
                property=c.property,
                photo_type=cfg.photo_type,
                exclude_terms=tuple(cfg.exclude_terms),
                or_terms=tuple(unique_texts(c.or_terms)) if cfg.or_terms else (),
            )
        )
    return out


def make_queries(entities, out_dir: str, cfg, llm=None, llm_top: int = 0) -> tuple[list, dict]:
    """The queries stage: queries for `entities` (with LLM attributes for the `llm_top` entities with
    most sitelinks when an `llm` is given) written to `out_dir/queries.jsonl`, and its config and stats
    to `queries_config.json`; returns the queries and the stats."""
    from tqdm import tqdm

    from entitynet.files import ensure_writable_dir, write_json
    from entitynet.records import write_jsonl
    from entitynet.storage import STORE, is_remote

    if not is_remote(out_dir):
        ensure_writable_dir(out_dir)
    started = time.time()
    # what `kg classify` judged not visual gets no queries (its entities.jsonl holds none; a file
    # that mixes them in is taken as it says)
    not_visual = sum(1 for e in entities if e.visual is False)
    entities = [e for e in entities if e.visual is not False]
    llm_stats = {}
    if llm is not None and llm_top > 0:
        ranked = sorted(range(len(entities)), key=lambda i: -entities[i].sitelinks)[:llm_top]
        failed = 0
        for i in tqdm(ranked, desc="LLM attributes", unit="entity", file=sys.stderr):
            attrs = llm.attributes(entities[i])
            if attrs is None:
                failed += 1
                continue
            entities[i] = dataclasses.replace(entities[i], attributes=entities[i].attributes + tuple(attrs))
        llm_stats = {"llm_entities": len(ranked), "llm_failed": failed}
    queries = build_queries(entities, cfg)
    write_jsonl(STORE.join(out_dir, "queries.jsonl"), queries)
    stats = {
        "entities": len(entities),
        "queries": len(queries),
        "per_kind": dict(Counter(q.kind for q in queries).most_common()),
        "not_visual": not_visual,
        "seconds": round(time.time() - started, 2),
        **llm_stats,
    }
    write_json(
        STORE.join(out_dir, "queries_config.json"), {"queries": dataclasses.asdict(cfg), "stats": stats}
    )
    return queries, stats
