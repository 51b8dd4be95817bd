"""Knowledge-graph expansion as plain functions: what to ask, how to read the answers, and how
to assemble `Entity` records. `beam_pipelines/expand_kg.py` runs these at scale; tests call them
directly.

The two entity-selection modes of the EntityNet paper:

- living: taxa under the roots (animal Q729, plant Q756) through parent taxon (P171),
  subclass (P279) and instance (P31) links, leaving out humans, mythical creatures, individual
  animals, cultivars and anything with coordinates; plus the fruits of plant taxa.
- world: subclasses (P279) of the roots (the reference's 21 super-entities), no instances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from entitynet.errors import ConfigError
from entitynet.kg import ids, sparql
from entitynet.kg.client import SparqlClient
from entitynet.kg.results import Row, Term
from entitynet.records import Attribute, Entity, entity_sort_key, unique_texts

LIVING_ROOTS = ("Q729", "Q756")  # animal, plant
# The 21 super-entities the reference uses for its "world" entities (kgraph/manual_entities.csv).
WORLD_ROOTS = (
    "Q729", "Q756", "Q34379", "Q41176", "Q42889", "Q2095", "Q14745", "Q11460", "Q747883", "Q10683158",
    "Q712378", "Q15324", "Q39546", "Q618123", "Q214609", "Q25257", "Q13226383", "Q811979", "Q4936952",
    "Q2424752", "Q11663",
)  # fmt: skip
# human, mythical creature, individual animal, cultivar
LIVING_EXCLUDE = ("Q5", "Q24334299", "Q795052", "Q4886")
# mammal, bird, reptile, amphibian, fish, insect, tree, fungus (only ids we are sure of; add more
# with --natural-type)
LIVING_NATURAL_TYPES = ("Q7377", "Q5113", "Q10811", "Q10908", "Q152", "Q1390", "Q10884", "Q764")
FRUIT_CLASSES = ("Q3314483", "Q1364")  # fruit (food), fruit (botany)
# the entity's identifiers in the open image sources (Entity field -> Wikidata property): Commons
# category, GBIF taxon key, iNaturalist taxon id, Encyclopedia of Life id
SOURCE_ID_PROPERTIES = {
    "commons_category": "P373",
    "gbif_id": "P846",
    "inaturalist_id": "P3151",
    "eol_id": "P830",
}
# colour, has part, made from material, uses, has use, has characteristic
ATTRIBUTE_PROPERTIES = ("P462", "P527", "P186", "P2283", "P366", "P1552")
# kingdom, phylum, class, order, family, genus: the ranks of a taxonomic name (BioCLIP's "taxonomic" text)
LINNAEAN_RANKS = ("Q36732", "Q38348", "Q37517", "Q36602", "Q35409", "Q34740")
# what the lineage needs of each ancestor: its taxon name and rank
LINEAGE_PROPERTIES = ("P225", "P105")
# taxon name, common name, rank, image
CLAIM_PROPERTIES = ("P225", "P1843", "P105", "P18", *SOURCE_ID_PROPERTIES.values())


@dataclass(frozen=True)
class ExpandConfig:
    """Everything that decides which entities an expansion yields. Saved next to entities.jsonl."""

    mode: str = "living"
    roots: tuple[str, ...] = ()  # empty: the mode's default roots
    min_sitelinks: int = 5
    languages: tuple[str, ...] = ("en",)
    natural_types: tuple[str, ...] | None = None  # None: the mode's default list
    attribute_properties: tuple[str, ...] = ATTRIBUTE_PROPERTIES
    exclude_classes: tuple[str, ...] | None = None  # None: the mode's default
    exclude_with: tuple[str, ...] | None = None  # entities with any of these properties are left out
    product_classes: tuple[str, ...] | None = None  # fruits; None: the mode's default
    product_roots: tuple[str, ...] = ("Q756",)  # products are looked up for taxa below these roots
    max_depth: int = 64
    batch_size: int = 200  # ids per VALUES query
    concurrency: int = 4  # queries in flight per worker

    def resolved(self) -> ExpandConfig:
        """Defaults filled in and every identifier validated (a ConfigError names the bad one)."""
        if self.mode not in ("living", "world"):
            raise ConfigError(f"unknown mode {self.mode!r}: use living or world")
        living = self.mode == "living"
        if self.min_sitelinks < 0:
            raise ConfigError(f"--min-sitelinks must be >= 0, got {self.min_sitelinks}")
        if not 1 <= self.batch_size <= 5000:
            raise ConfigError(f"batch size must be between 1 and 5000, got {self.batch_size}")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"concurrency must be between 1 and 64, got {self.concurrency}")
        if self.max_depth < 1:
            raise ConfigError(f"max depth must be >= 1, got {self.max_depth}")
        if not self.languages:
            raise ConfigError("give at least one language")

        def pick(value, living_default, world_default):
            return tuple(value) if value is not None else (living_default if living else world_default)

        cfg = dataclasses.replace(
            self,
            roots=tuple(
                dict.fromkeys(ids.qids(self.roots or (LIVING_ROOTS if living else WORLD_ROOTS), "root"))
            ),
            languages=tuple(ids.lang(x) for x in self.languages),
            natural_types=tuple(ids.qids(pick(self.natural_types, LIVING_NATURAL_TYPES, ()), "natural type")),
            attribute_properties=tuple(ids.pid(p, "attribute property") for p in self.attribute_properties),
            exclude_classes=tuple(ids.qids(pick(self.exclude_classes, LIVING_EXCLUDE, ()), "excluded class")),
            exclude_with=tuple(ids.pid(p) for p in pick(self.exclude_with, ("P625",), ())),
            product_classes=tuple(ids.qids(pick(self.product_classes, FRUIT_CLASSES, ()), "product class")),
            product_roots=tuple(ids.qids(self.product_roots, "product root")),
        )
        return cfg

    @property
    def via(self) -> tuple[str, ...]:
        return ("P171", "P279", "P31") if self.mode == "living" else ("P279",)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- one hop


class Hop(NamedTuple):
    """child --via--> parent, with the child's sitelinks. A plain tuple, so Beam encodes it cheaply."""

    child: str
    parent: str
    sitelinks: int


@dataclass(frozen=True)
class ClassSets:
    """Class sets closed under subclass (P279*), computed once per run before the traversal."""

    excluded: frozenset[str] = frozenset()  # children of these types are left out
    products: frozenset[str] = frozenset()  # products (fruits) must be of one of these types


def _id(term) -> str | None:
    return ids.id_from_iri(term.value) if term is not None and term.type == "uri" else None


def _int(term) -> int:
    return term.value if term is not None and isinstance(term.value, int) else 0


def fetch_class_sets(client: SparqlClient, cfg: ExpandConfig) -> ClassSets:
    def closed(classes: tuple[str, ...] | None) -> frozenset[str]:
        if not classes:
            return frozenset()
        found = {_id(r.get("c")) for r in client.select(sparql.subclasses(classes))}
        return frozenset(classes) | {c for c in found if c}

    living = cfg.mode == "living"
    return ClassSets(closed(cfg.exclude_classes), closed(cfg.product_classes) if living else frozenset())


def parse_hops(
    rows: Iterable[Mapping[str, Term | None]],
    excluded: frozenset[str] = frozenset(),
    required: frozenset[str] | None = None,
) -> list[Hop]:
    """Rows of `sparql.children` as hops. Rows that do not name two items are ignored; a child
    whose P31/P279 types meet `excluded` is dropped, and so is one with no type in `required`."""
    best: dict[tuple[str, str], int] = {}
    types: dict[str, set[str]] = {}
    for r in rows:
        child, parent = _id(r.get("child")), _id(r.get("parent"))
        if child and parent and child.startswith("Q") and child != parent:
            best[child, parent] = max(_int(r.get("sitelinks")), best.get((child, parent), 0))
            kind = _id(r.get("type"))
            types.setdefault(child, set()).update([kind] if kind else [])

    def keep(child: str) -> bool:
        ts = types.get(child, set())
        if child in excluded or ts & excluded:
            return False
        return required is None or bool(ts & required)

    hops = (Hop(c, p, n) for (c, p), n in best.items() if keep(c))
    return sorted(hops, key=lambda h: (ids.numeric(h.child), ids.numeric(h.parent)))


def fetch_hops(client: SparqlClient, cfg: ExpandConfig, parents: list[str], classes: ClassSets) -> list[Hop]:
    assert cfg.exclude_with is not None  # the traversal runs on a resolved() config
    rows = client.select(sparql.children(parents, cfg.via, cfg.exclude_with))
    return parse_hops(rows, classes.excluded)


def fetch_products(client: SparqlClient, taxa: list[str], classes: ClassSets) -> list[Hop]:
    """Fruits of the taxa, as hops from taxon to product."""
    rows = client.select(sparql.products(taxa))
    renamed = [
        {
            "child": r.get("product"),
            "parent": r.get("taxon"),
            "sitelinks": r.get("sitelinks"),
            "type": r.get("type"),
        }
        for r in rows
    ]
    return parse_hops(renamed, classes.excluded, classes.products)


def fetch_sitelinks(client: SparqlClient, entity_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {e: 0 for e in entity_ids}
    for r in client.select(sparql.sitelinks(entity_ids)):
        e = _id(r.get("e"))
        if e in out:
            out[e] = max(out[e], _int(r.get("sitelinks")))
    return out


# ---------------------------------------------------------------- details


@dataclass
class Texts:
    labels: dict[str, str] = field(default_factory=dict)  # language -> label
    aliases: dict[str, list[str]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


def parse_texts(rows: Iterable[Row]) -> dict[str, Texts]:
    out: dict[str, Texts] = {}
    for r in rows:
        e, kind, text = _id(r.get("e")), r.get("kind"), r.get("text")
        if not e or kind is None or text is None or not isinstance(text.value, str):
            continue
        lang = (text.lang or "").lower()
        t = out.setdefault(e, Texts())
        value = " ".join(text.value.split())
        if kind.value == "label":
            # Several labels in one language cannot happen in Wikidata; keep the smallest for determinism.
            t.labels[lang] = min(value, t.labels.get(lang, value))
        elif kind.value == "alias":
            t.aliases.setdefault(lang, []).append(value)
        elif kind.value == "description":
            t.descriptions[lang] = min(value, t.descriptions.get(lang, value))
    for t in out.values():
        for lang in t.aliases:
            t.aliases[lang] = sorted(set(t.aliases[lang]))
    return out


def fetch_texts(
    client: SparqlClient, cfg: ExpandConfig, entity_ids: list[str], labels_only=False
) -> dict[str, Texts]:
    return parse_texts(client.select(sparql.texts(entity_ids, cfg.languages, labels_only)))


Claims = dict[str, dict[str, list]]  # entity -> property -> values (ids or strings / (text, lang))


def parse_claims(rows: Iterable[Row]) -> Claims:
    out: Claims = {}
    for r in rows:
        e, p, v = _id(r.get("e")), r.get("p"), r.get("v")
        if not e or p is None or v is None:
            continue
        value = _id(v) if v.type == "uri" and _id(v) else v.value
        if v.type == "literal" and v.lang:
            value = (v.value, v.lang.lower())
        out.setdefault(e, {}).setdefault(p.value, []).append(value)
    for props in out.values():
        for prop, values in props.items():
            props[prop] = sorted(set(values), key=lambda x: (str(type(x)), x))
    return out


def detail_properties(cfg: ExpandConfig) -> tuple[str, ...]:
    return tuple(dict.fromkeys(("P31", "P279", "P171", *CLAIM_PROPERTIES, *cfg.attribute_properties)))


def fetch_claims(client: SparqlClient, cfg: ExpandConfig, entity_ids: list[str]) -> Claims:
    return parse_claims(client.select(sparql.claims(entity_ids, detail_properties(cfg))))


def fetch_lineage_claims(client: SparqlClient, entity_ids: list[str]) -> Claims:
    """Taxon name and rank of ancestors that are not selected themselves (`lineage_taxa` needs them)."""
    return parse_claims(client.select(sparql.claims(entity_ids, LINEAGE_PROPERTIES)))


def lineage_taxa(lineage_ids: Iterable[str], claims: Claims) -> tuple[str, ...]:
    """Taxon names (P225) of the ancestors, root side first: those of a Linnaean rank (kingdom ...
    genus) when any ancestor has one, else every ancestor with a taxon name (a graph without ranks)."""
    named = []
    for a in reversed(list(lineage_ids)):
        props = claims.get(a, {})
        names = sorted(v if isinstance(v, str) else v[0] for v in props.get("P225", ()))
        if names:
            ranks = {v for v in props.get("P105", ()) if isinstance(v, str)}
            named.append((names[0], bool(ranks & set(LINNAEAN_RANKS))))
    ranked = [n for n, linnaean in named if linnaean]
    return tuple(ranked if ranked else (n for n, _ in named))


def referenced_ids(claims: Claims, cfg: ExpandConfig) -> set[str]:
    """Items named by attribute and rank statements: their labels are needed too."""
    out: set[str] = set()
    for props in claims.values():
        for p in (*cfg.attribute_properties, "P105"):
            out.update(v for v in props.get(p, ()) if isinstance(v, str) and v.startswith("Q"))
    return out


# ---------------------------------------------------------------- the graph


@dataclass
class Graph:
    """Everything the traversal found: each node's BFS depth, root and sitelinks, and in-scope parents."""

    depth: dict[str, int]
    root: dict[str, str]
    sitelinks: dict[str, int]
    parents: dict[str, list[str]]
    products: set[str] = field(default_factory=set)
    traversal_seconds: float = 0.0  # when the traversal finished, for the stats
    _nearest: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls, nodes: Iterable[tuple[str, int, str, int]], hops: Iterable[Hop], product_hops: Iterable[Hop] = ()
    ) -> Graph:
        """`nodes`: (id, depth, root, sitelinks) from the traversal; `hops`: every edge seen."""
        depth, root, sl = {}, {}, {}
        for node, d, r, n in sorted(nodes, key=lambda x: (x[1], ids.numeric(x[0]), ids.numeric(x[2]))):
            if node not in depth:
                depth[node], root[node], sl[node] = d, r, n
        parents: dict[str, set[str]] = {}
        for h in hops:
            if h.child in depth and h.parent in depth:
                parents.setdefault(h.child, set()).add(h.parent)
        products = set()
        for h in sorted(product_hops, key=lambda h: (ids.numeric(h.child), ids.numeric(h.parent))):
            if h.parent not in depth:
                continue
            if h.child not in depth:
                depth[h.child], root[h.child], sl[h.child] = depth[h.parent] + 1, root[h.parent], h.sitelinks
                products.add(h.child)
            parents.setdefault(h.child, set()).add(h.parent)
        sorted_parents = {k: sorted(v, key=ids.numeric) for k, v in parents.items()}
        return cls(depth, root, sl, sorted_parents, products)

    def selected(self, min_sitelinks: int) -> list[str]:
        return sorted((e for e, n in self.sitelinks.items() if n >= min_sitelinks), key=ids.numeric)

    def up(self, entity: str) -> str | None:
        """The parent on the shortest path to the root (ties: the lower id)."""
        best = None
        for p in self.parents.get(entity, ()):
            if self.depth[p] < self.depth[entity] and (
                best is None or (self.depth[p], ids.numeric(p)) < (self.depth[best], ids.numeric(best))
            ):
                best = p
        return best

    def lineage(self, entity: str) -> list[str]:
        """Ids from the direct parent up to the root, along the shortest path (ties: lower id)."""
        out, cur = [], self.up(entity)
        while cur is not None:
            out.append(cur)
            cur = self.up(cur)
        return out

    def nearest_table(self, targets: Iterable[str]) -> dict[str, str]:
        """For every node, its nearest strict ancestor in `targets`: fewest hops, then the lower id.
        A direct parent counts at any depth; further ancestors are followed only towards the root
        (so cycles cannot matter). One pass in depth order."""
        targets = frozenset(targets)
        cached = self._nearest.get(targets)
        if cached is not None:
            return cached
        best: dict[str, tuple[int, int, str]] = {}
        for n in sorted(self.depth, key=self.depth.__getitem__):
            found = None
            for p in self.parents.get(n, ()):
                if p in targets:  # a direct parent counts at any depth ("ginkgo" is a "tree")
                    cand = (1, ids.numeric(p), p)
                elif self.depth[p] < self.depth[n] and p in best:
                    d, num, t = best[p]
                    cand = (d + 1, num, t)
                else:
                    continue
                if found is None or cand < found:
                    found = cand
            if found is not None:
                best[n] = found
        table = {n: t for n, (_, _, t) in best.items()}
        self._nearest[targets] = table
        return table

    def natural_type(self, entity: str, types: Iterable[str]) -> str:
        if self.depth.get(entity) == 0:
            return entity
        return self.nearest_table(types).get(entity) or self.root[entity]

    def label_ids_needed(self, selected: Iterable[str], types: Iterable[str]) -> set[str]:
        """Ancestors whose labels the selected entities' lineage and natural type need."""
        types = tuple(types)
        need = set()
        for e in selected:
            need.update(self.lineage(e))
            need.add(self.natural_type(e, types))
        return need


# ---------------------------------------------------------------- assembly


def _first(by_lang: Mapping[str, str], languages: Iterable[str]) -> str:
    for lang in languages:
        if by_lang.get(lang):
            return by_lang[lang]
    return ""


def label_of(texts: Mapping[str, Texts], entity: str, languages: Iterable[str]) -> str:
    t = texts.get(entity)
    return _first(t.labels, languages) if t else ""


def assemble(
    graph: Graph,
    selected: Iterable[str],
    texts: Mapping[str, Texts],
    claims: Claims,
    cfg: ExpandConfig,
) -> list[Entity]:
    """Entity records for the selected ids, in the deterministic order of entities.jsonl.

    Entities without a label in any of the configured languages are dropped: there is nothing to
    search for or to caption them with.
    """
    langs = cfg.languages
    assert cfg.natural_types is not None  # entities are assembled with a resolved() config
    out = []
    for e in selected:
        t = texts.get(e, Texts())
        label = _first(t.labels, langs)
        if not label:
            continue
        props = claims.get(e, {})
        aliases = unique_texts(a for lang in langs for a in t.aliases.get(lang, ()))
        aliases = [a for a in aliases if a.casefold() != label.casefold()]
        common = unique_texts(
            v[0] for lang in langs for v in props.get("P1843", ()) if isinstance(v, tuple) and v[1] == lang
        )
        taxon = unique_texts(v if isinstance(v, str) else v[0] for v in props.get("P225", ()))
        lineage_ids = graph.lineage(e)
        nt = graph.natural_type(e, cfg.natural_types)
        attributes = []
        for p in cfg.attribute_properties:
            for v in props.get(p, ()):
                if isinstance(v, str) and v.startswith("Q"):
                    value = label_of(texts, v, langs)
                    if value:
                        attributes.append(Attribute(property=p, value=value, value_id=v))
        ranks = [label_of(texts, v, langs) for v in props.get("P105", ()) if isinstance(v, str)]
        images = sorted(v for v in props.get("P18", ()) if isinstance(v, str) and "://" in v)
        source_ids = {name: _first_text(props.get(p, ())) for name, p in SOURCE_ID_PROPERTIES.items()}
        if e in graph.products:
            kind = "fruit"
        elif cfg.mode == "living" and (props.get("P171") or props.get("P225")):
            kind = "taxon"
        else:
            kind = "class"
        out.append(
            Entity(
                id=e,
                label=label,
                description=_first(t.descriptions, langs),
                aliases=tuple(aliases),
                sitelinks=graph.sitelinks.get(e, 0),
                parents=tuple(graph.parents.get(e, ())),
                lineage=tuple(label_of(texts, a, langs) or a for a in lineage_ids),
                lineage_ids=tuple(lineage_ids),
                root=graph.root[e],
                depth=graph.depth[e],
                natural_type=nt,
                natural_type_label=label_of(texts, nt, langs) or nt,
                taxon_names=tuple(taxon),
                common_names=tuple(c for c in common if c.casefold() != label.casefold()),
                rank=next((r for r in ranks if r), ""),
                image=images[0] if images else "",
                attributes=tuple(attributes),
                kind=kind,
                lineage_taxa=lineage_taxa(lineage_ids, claims) if kind != "class" or taxon else (),
                commons_category=source_ids["commons_category"],
                gbif_id=source_ids["gbif_id"],
                inaturalist_id=source_ids["inaturalist_id"],
                eol_id=source_ids["eol_id"],
            )
        )
    return sorted(out, key=entity_sort_key)


def _first_text(values) -> str:
    """The smallest plain value of an identifier property (deterministic when there are several)."""
    texts = sorted(v if isinstance(v, str) else v[0] for v in values if v)
    return texts[0].strip() if texts else ""


def root_check(
    client: SparqlClient, cfg: ExpandConfig, source: str, defaulted: bool = False
) -> dict[str, int]:
    """Sitelinks of each root the graph knows. A root the user named that the graph does not know
    is a ConfigError naming it; of the mode's default roots (`defaulted`), the ones the graph lacks
    are left out (a graph of beetles has no plants), and none at all is a ConfigError that says to
    give --root."""
    found = fetch_texts(client, cfg, list(cfg.roots), labels_only=True)
    links = fetch_sitelinks(client, list(cfg.roots))
    missing = [r for r in cfg.roots if r not in found]
    langs = ", ".join(cfg.languages)
    if defaulted and len(missing) == len(cfg.roots):
        raise ConfigError(
            f"{source} holds none of {cfg.mode} mode's default roots ({', '.join(cfg.roots)}, with a "
            f"label in {langs}); give your graph's top entity with --root QID"
        )
    if missing and not defaulted:
        raise ConfigError(
            f"root {', '.join(missing)} not found in {source} (no label in {langs}); "
            "check the id (on wikidata.org, or in your graph file)"
        )
    return {r: links.get(r, 0) for r in cfg.roots if r in found}


def nothing_selected(graph: Graph, cfg: ExpandConfig, source: str) -> str:
    """Why an expansion selected no entity, and what to do (the one line of its KGError)."""
    roots = ", ".join(cfg.roots)
    if len(graph.depth) <= len(cfg.roots):
        via = " or ".join(cfg.via)
        return (
            f"nothing below {roots} in {source}: no entity links to a root through {via} "
            f"({cfg.mode} mode); check the graph's parent statements or the --root"
        )
    most = max(graph.sitelinks.values(), default=0)
    return (
        f"all {len(graph.depth):,} entities under {roots} in {source} have fewer than "
        f"{cfg.min_sitelinks} sitelinks (the most is {most}); re-run with --min-sitelinks {most} "
        "(a graph of your own may carry no wikibase:sitelinks) or add sitelinks to the graph"
    )
