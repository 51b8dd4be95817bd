"""SPARQL 1.1 query builders. Every query here runs unchanged on WDQS, QLever and Oxigraph.

Only validated ids (`ids.qid`, `ids.pid`, `ids.lang`) reach a query, so no value from a config
file or from the graph itself can change a query's structure. Each query takes a batch of
entities in a `VALUES` block, so no single query has to survive a public endpoint's timeout.
"""

from __future__ import annotations

from collections.abc import Sequence

from entitynet.kg import ids

PREFIXES = """PREFIX wd: <http://www.wikidata.org/entity/>
PREFIX wdt: <http://www.wikidata.org/prop/direct/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
PREFIX schema: <http://schema.org/>
PREFIX wikibase: <http://wikiba.se/ontology#>
"""

# The sitelink count lives on the item in WDQS's data model and on the item's data node
# (`?data schema:about ?item`) in Wikidata's RDF dumps, QLever and our sample graph: ask both.
SITELINKS = (
    "{{ {v} wikibase:sitelinks {n} }} UNION {{ ?_data schema:about {v} . ?_data wikibase:sitelinks {n} }}"
)


def _values(var: str, entity_ids: Sequence[str]) -> str:
    return f"VALUES ?{var} {{ " + " ".join(f"wd:{ids.qid(e)}" for e in entity_ids) + " }"


def _path(pids: Sequence[str]) -> str:
    return "|".join(f"wdt:{ids.pid(p)}" for p in pids)


def _langs(languages: Sequence[str]) -> str:
    return ", ".join(ids.escape_literal(ids.lang(x)) for x in languages)


def children(parents: Sequence[str], via: Sequence[str], exclude_with: Sequence[str] = ()) -> str:
    """One hop down: (child, parent, child's sitelinks, child's P31/P279 types) for every child
    linked to a parent by `via`. Children with any `exclude_with` property (e.g. P625 coordinates)
    are left out here; excluded classes are checked against `?type` by the caller, because a
    transitive path inside a filter is slow on some engines (Oxigraph evaluates it unbound).
    """
    return _hops(_values("parent", parents), via, exclude_with)


def closure_children(roots: Sequence[str], via: Sequence[str], exclude_with: Sequence[str] = ()) -> str:
    """`children` for every parent below the roots at once (`?parent (via)* ?root`): the whole
    graph's hops in one query, for endpoints that can take it. The rows are those the level
    queries would give for any parent the walk reaches (and some below excluded nodes, which the
    walk never reaches)."""
    return _hops(_values("root", roots) + f"\n  ?parent ({_path(via)})* ?root .", via, exclude_with)


def _hops(head: str, via: Sequence[str], exclude_with: Sequence[str]) -> str:
    filters = "".join(f"\n  FILTER NOT EXISTS {{ ?child wdt:{ids.pid(p)} ?_any . }}" for p in exclude_with)
    return (
        PREFIXES
        + "SELECT DISTINCT ?child ?parent ?sitelinks ?type WHERE {\n  "
        + head
        + f"\n  ?child {_path(via)} ?parent .{filters}"
        + "\n  OPTIONAL { "
        + SITELINKS.format(v="?child", n="?sitelinks")
        + " }\n  OPTIONAL { ?child wdt:P31|wdt:P279 ?type . }\n}"
    )


def subclasses(classes: Sequence[str]) -> str:
    """The classes and all their subclasses (P279*): rows (?c)."""
    return PREFIXES + "SELECT DISTINCT ?c WHERE {\n  " + _values("x", classes) + "\n  ?c wdt:P279* ?x .\n}"


def sitelinks(entity_ids: Sequence[str]) -> str:
    return (
        PREFIXES
        + "SELECT ?e ?sitelinks WHERE {\n  "
        + _values("e", entity_ids)
        + "\n  "
        + SITELINKS.format(v="?e", n="?sitelinks")
        + "\n}"
    )


def texts(entity_ids: Sequence[str], languages: Sequence[str], labels_only: bool = False) -> str:
    """Labels, aliases and descriptions in the given languages: rows (?e, ?kind, ?text)."""
    parts = ['{ ?e rdfs:label ?text . BIND("label" AS ?kind) }']
    if not labels_only:
        parts.append('{ ?e skos:altLabel ?text . BIND("alias" AS ?kind) }')
        parts.append('{ ?e schema:description ?text . BIND("description" AS ?kind) }')
    return (
        PREFIXES
        + "SELECT ?e ?kind ?text WHERE {\n  "
        + _values("e", entity_ids)
        + "\n  "
        + " UNION ".join(parts)
        + f"\n  FILTER(LANG(?text) IN ({_langs(languages)}))\n}}"
    )


def claims(entity_ids: Sequence[str], pids: Sequence[str]) -> str:
    """Direct ("truthy") statements of the given properties: rows (?e, ?p, ?v)."""
    parts = [f'{{ ?e wdt:{ids.pid(p)} ?v . BIND("{p}" AS ?p) }}' for p in pids]
    return (
        PREFIXES
        + "SELECT ?e ?p ?v WHERE {\n  "
        + _values("e", entity_ids)
        + "\n  "
        + " UNION ".join(parts)
        + "\n}"
    )


def products(taxa: Sequence[str]) -> str:
    """Products of taxa (P1582 on the product or P1672 on the taxon), with the product's P31/P279
    types so the caller can keep those of a product class (fruits): rows (?product ?taxon ?sitelinks ?type).
    """
    return (
        PREFIXES
        + "SELECT DISTINCT ?product ?taxon ?sitelinks ?type WHERE {\n  "
        + _values("taxon", taxa)
        + "\n  { ?product wdt:P1582 ?taxon } UNION { ?taxon wdt:P1672 ?product }\n"
        + "  ?product wdt:P31|wdt:P279 ?type .\n"
        + "  OPTIONAL { "
        + SITELINKS.format(v="?product", n="?sitelinks")
        + " }\n}"
    )


def closure(
    roots: Sequence[str],
    via: Sequence[str],
    excluded_types: Sequence[str] = (),
    exclude_with: Sequence[str] = (),
) -> str:
    """Everything below the roots in one query (the transitive closure): the benchmark's baseline.

    `excluded_types` is the already-closed set of excluded classes (see `subclasses`). Public
    endpoints time out on this for large subtrees, which is why the expansion goes level by level.
    """
    filters = []
    if excluded_types:
        xs = " ".join(f"wd:{ids.qid(x)}" for x in excluded_types)
        filters.append(f"FILTER NOT EXISTS {{ ?e wdt:P31|wdt:P279 ?_t . VALUES ?_t {{ {xs} }} }}")
    for p in exclude_with:
        filters.append(f"FILTER NOT EXISTS {{ ?e wdt:{ids.pid(p)} ?_any . }}")
    return (
        PREFIXES
        + "SELECT DISTINCT ?e WHERE {\n  "
        + _values("root", roots)
        + f"\n  ?e ({_path(via)})* ?root .\n  "
        + "\n  ".join(filters)
        + "\n}"
    )


def supertypes(entity_ids: Sequence[str], via: Sequence[str], hops: int = 3) -> str:
    """Every class within `hops` steps up `via` from each entity, with its sitelinks: rows
    (?e ?s ?sitelinks). The candidates of the entity's natural type (`entitynet.kg.classify`)."""
    step = f"({_path(via)})"
    path = "/".join([step] + [f"{step}?"] * (hops - 1))
    return (
        PREFIXES
        + "SELECT DISTINCT ?e ?s ?sitelinks WHERE {\n  "
        + _values("e", entity_ids)
        + f"\n  ?e {path} ?s .\n  FILTER(?s != ?e)\n  OPTIONAL {{ "
        + SITELINKS.format(v="?s", n="?sitelinks")
        + " }\n}"
    )


def under(entity_ids: Sequence[str], tops: Sequence[str]) -> str:
    """Which of the `tops` classes each entity is an instance or a subclass of, at any depth
    (`(P31|P279)/P279*`): rows (?e ?top)."""
    return (
        PREFIXES
        + "SELECT DISTINCT ?e ?top WHERE {\n  "
        + _values("e", entity_ids)
        + "\n  "
        + _values("top", tops)
        + "\n  ?e (wdt:P31|wdt:P279)/wdt:P279* ?top .\n}"
    )
