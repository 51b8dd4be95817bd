"""Entity links: which entities an image shows, with the evidence for each, and the pruning that
keeps the links worth training on.

Every entity whose query found an image is a candidate link. Its evidence (`records.EntityLink`):
the kinds of the queries that found it, its best rank in their results, whether the image's alt
texts name the entity (MetaCLIP's matcher over every entity's names), and whether they name
other entities instead. An alt text that names more than `max_finders` entities is a list
("13 icons: dolphin, deer, ..."), not a caption, and names none. How many distinct entities found
the same image is the record's number of links. Then (`LinkRule`):

- a link the source makes by identifier (a GBIF or iNaturalist taxon id, a Commons category:
  `ImageRecord.id_entities`) is kept ("identifier"): the subject is known, not guessed;
- a link the alt text supports is kept ("alt_text");
- an image found by more than `max_finders` entities is generic (a collage, a stock "animals"
  picture, a page that lists every species): it keeps only supported links ("generic" otherwise);
- a link whose image's alt texts name other entities and not this one is dropped
  ("contradicted": the "lion" query's result titled "giraffe emoji");
- a link from the entity's own name query (noun, alias, attribute-noun) within the top
  `max_rank` results is kept ("name_query");
- anything else is dropped ("weak": e.g. found only by a shared "golden mammal" query, or deep
  in the results).

An image left with no kept link is dropped from the harvest (outcome "unlinked") unless
`keep_unlinked`. Training-text sampling and curation read the kept links (`ImageRecord.entity_ids`);
the record keeps the evidence of every candidate link (`ImageRecord.links`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from entitynet.errors import ConfigError
from entitynet.options import option
from entitynet.records import Entity, EntityLink, ImageRecord, Query
from entitynet.text.matching import Matcher

NAME_KINDS = ("noun", "alias", "attribute-noun")  # queries that carry the entity's own name
KEEP = ("identifier", "alt_text", "name_query")  # reasons a link is kept
DROP = ("generic", "contradicted", "weak")


@dataclass(frozen=True)
class LinkRule:
    max_rank: int = option(
        20, "an entity's own name query links an image found within its top N results", flag="--link-max-rank"
    )
    max_finders: int = option(
        3,
        "an image found by more entities than this keeps only the links its alt text supports",
        flag="--link-max-finders",
    )
    keep_unlinked: bool = option(
        False, "keep images whose entity links were all pruned (they train on their alt texts only)"
    )

    def __post_init__(self):
        if self.max_rank < 1 or self.max_finders < 1:
            raise ConfigError(f"link pruning needs --link-max-rank and --link-max-finders >= 1, got {self}")


def decide(
    kinds: Iterable[str],
    rank: int,
    alt_text: bool,
    finders: int,
    rule: LinkRule,
    alt_other: bool = False,
    identifier: bool = False,
) -> str:
    """Why a link is kept or dropped (one of KEEP or DROP)."""
    if identifier:
        return "identifier"
    if alt_text:
        return "alt_text"
    if finders > rule.max_finders:
        return "generic"
    if alt_other:
        return "contradicted"
    if set(kinds) & set(NAME_KINDS) and 0 <= rank < rule.max_rank:
        return "name_query"
    return "weak"


def prune(links: Iterable[EntityLink], rule: LinkRule) -> tuple[EntityLink, ...]:
    """The links with their decision made afresh (e.g. after merging the evidence of duplicates)."""
    links = tuple(links)
    return tuple(
        replace(x, why=decide(x.kinds, x.rank, x.alt_text, len(links), rule, x.alt_other, x.identifier))
        for x in links
    )


class Linker:
    """Builds the links of records from the queries that found them. Entity names for the alt-text
    check come from `entities` when given, else from the texts of the noun and alias queries."""

    def __init__(
        self, queries: Iterable[Query], entities: Iterable[Entity] = (), rule: LinkRule = LinkRule()
    ):
        queries = list(queries)
        self.rule = rule
        self.queries = {q.id: (q.kind, tuple(q.entity_ids)) for q in queries}
        names: dict[str, list[str]] = {e.id: e.synonyms() for e in entities}
        if not names:
            for q in queries:
                if q.kind in ("noun", "alias"):
                    for e in q.entity_ids:
                        names.setdefault(e, []).append(q.text)
        self._names, self._ids = [], []
        for e, ns in names.items():
            for n in ns:
                self._names.append(n)
                self._ids.append(e)
        self.matcher: Matcher[str] | None = None

    def _match(self, texts: Iterable[str]) -> set[str]:
        """Entities the alt texts name; an alt text naming more than max_finders is a list: none."""
        if self.matcher is None:  # built lazily on each worker; the Linker travels without it
            self.matcher = Matcher(self._names, self._ids)
        found: set[str] = set()
        for t in texts:
            named = self.matcher.find(t)
            if len(named) <= self.rule.max_finders:
                found |= named
        return found

    def __getstate__(self):
        return {**self.__dict__, "matcher": None}

    def links(
        self,
        query_ids: Iterable[str],
        ranks: Iterable[int],
        alt_texts: Iterable[str],
        id_entities: Iterable[str] = (),
    ) -> tuple[EntityLink, ...]:
        by_id = set(id_entities)
        evidence: dict[str, tuple[set[str], int]] = {e: (set(), -1) for e in by_id}
        for qid, rank in zip(query_ids, ranks, strict=True):
            kind, ids = self.queries.get(qid, ("", ()))
            for e in ids:
                kinds, best = evidence.get(e, (set(), -1))
                kinds.add(kind)
                if rank >= 0 and (best < 0 or rank < best):
                    best = rank  # the best (lowest) rank of any query that found it; -1: unknown
                evidence[e] = (kinds, best)
        named = self._match(alt_texts) if evidence else set()
        raw = [
            EntityLink(
                entity=e,
                kinds=tuple(sorted(k for k in kinds if k)),
                rank=rank,
                alt_text=e in named,
                alt_other=e not in named and bool(named),
                identifier=e in by_id,
            )
            for e, (kinds, rank) in sorted(evidence.items())
        ]
        return prune(raw, self.rule)

    def apply(self, record: ImageRecord) -> ImageRecord:
        """The record with its links and, as `entity_ids`, the kept ones."""
        ranks = record.query_ranks or (-1,) * len(record.query_ids)
        links = self.links(record.query_ids, ranks, record.alt_texts, record.id_entities)
        return replace(record, links=links, entity_ids=kept_ids(links))


def kept_ids(links: Iterable[EntityLink]) -> tuple[str, ...]:
    return tuple(sorted(x.entity for x in links if x.why in KEEP))


def link_stats(records: Iterable[ImageRecord]) -> dict[str, int]:
    """Counters over records' links (to be summed across shards)."""
    out = {"images": 0, "links_found": 0, "links_kept": 0}
    out.update({f"kept_{k}": 0 for k in KEEP})
    out.update({f"dropped_{d}": 0 for d in DROP})
    out["generic_images"] = 0
    for r in records:
        out["images"] += 1
        out["links_found"] += len(r.links)
        for x in r.links:
            if x.why in KEEP:
                out["links_kept"] += 1
            out[f"kept_{x.why}" if x.why in KEEP else f"dropped_{x.why}"] += 1
        out["generic_images"] += any(x.why == "generic" for x in r.links)
    return out
