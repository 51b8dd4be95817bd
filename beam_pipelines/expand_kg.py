"""Expand a knowledge graph into `entities.jsonl`, level by level, as an Apache Beam pipeline.

    entitynet kg expand --kg-file entitynet/data/sample_kg.ttl --out out/kg
    entitynet kg expand --endpoint qlever --mode living --min-sitelinks 5 --out out/kg \\
        -- --runner=DataflowRunner --project=... --region=... --temp_location=gs://...

Graph (Beam graphs cannot loop, so the breadth-first search is unrolled to `max_depth` levels):

    roots ─► [level k: one-hop VALUES queries ─► children by hash bucket ─► GroupByKey(bucket)
              ─► keep children not in `seen` (a set side input) ─► seen ∪= level] × max_depth
          ─► Flatten(nodes), Flatten(edges) ─► (living) fruits of plant taxa
          ─► one Graph (depth, root, parents) ─► selected = sitelinks >= min
          ─► batched claims + texts of the selected, labels of their ancestors and attribute values
          ─► assemble, sort, write entities.jsonl + expand_stats.json

Every query is a batch of ids in a VALUES block, so no single query has to survive a public
endpoint's timeout. Elements are lists (a bucket of nodes, a batch of hops, a dict of details),
not single entities, which keeps Beam's per-element cost out of the way; each DoFn splits its
list into query batches and runs them on a small thread pool. The DoFns are thin adapters over
`entitynet.kg.expand`.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.common import PipelineOutput, run_pipeline
from entitynet import records
from entitynet.errors import KGError
from entitynet.kg import expand, ids
from entitynet.kg.client import KGSource

log = logging.getLogger("entitynet.expand")

ENTITIES = "entities.jsonl"
STATS = "expand_stats.json"
CONFIG = "expand_config.json"


Node = tuple[str, int, str, int]  # (id, BFS depth, root, sitelinks)


class _Queries(beam.DoFn):
    """Base: opens the knowledge-graph client and a thread pool once per DoFn instance, on the worker."""

    def __init__(self, source: KGSource, cfg: expand.ExpandConfig):
        self.source, self.cfg = source, cfg

    def setup(self):
        self.client = self.source.open()
        self.pool = ThreadPoolExecutor(self.cfg.concurrency)

    def teardown(self):
        self.pool.shutdown(wait=False)

    def batched(self, fn, entity_ids):
        """fn(client, batch) for each `batch_size` slice of the ids (sorted), concurrently, in order."""
        batches = _chunks(sorted(entity_ids, key=ids.numeric), self.cfg.batch_size)
        return list(self.pool.map(lambda b: fn(self.client, b), batches))


class OneHop(_Queries):
    """Frontier nodes -> (bucket, [(child, sitelinks, root of the parent)]) per hash bucket of the
    children, and every hop as a list on the "edges" output (a node's parents are all its hops,
    not only the one that discovered it)."""

    def __init__(self, source, cfg, classes: expand.ClassSets):
        super().__init__(source, cfg)
        self.classes = classes

    def process(self, nodes: list[Node]):
        root_of = {n[0]: n[2] for n in nodes}
        results = self.batched(lambda c, b: expand.fetch_hops(c, self.cfg, b, self.classes), root_of)
        buckets: dict[int, list] = defaultdict(list)
        edges = [h for hops in results for h in hops]
        for h in edges:
            buckets[bucket_of(h.child, self.cfg.buckets)].append((h.child, h.sitelinks, root_of[h.parent]))
        edges = [tuple(h) for h in edges]  # plain tuples: cheap for Beam's coder
        yield from buckets.items()
        if edges:
            yield beam.pvalue.TaggedOutput("edges", edges)


def bucket_of(entity_id: str, buckets: int) -> int:
    return zlib.crc32(entity_id.encode()) % buckets  # not hash(): salted per process


class NewNodes(beam.DoFn):
    """(bucket, [[(child, sitelinks, root)]]) -> the bucket's children that are not in `seen`, as
    nodes at this depth (root: the first configured root among their parents')."""

    def __init__(self, depth: int, roots: tuple[str, ...]):
        self.depth, self.rank = depth, {r: i for i, r in enumerate(roots)}

    def process(self, kv, seen: bytes):
        _, lists = kv
        found: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for items in lists:
            for child, sitelinks, root in items:
                found[child].append((sitelinks, root))
        children = sorted(found)
        known = _contains(
            _unpack(seen), np.fromiter((ids.numeric(c) for c in children), np.int64, len(children))
        )
        new = []
        for child, is_known in zip(children, known, strict=True):
            if not is_known:
                via = found[child]
                root = min((r for _, r in via), key=self.rank.__getitem__)
                new.append((child, self.depth, root, max(n for n, _ in via)))
        if new:
            yield new


# The set of every id seen so far travels between levels as one bytes value: the sorted numeric
# ids as int64. Beam copies it once per level, and copying bytes is cheap where re-encoding a
# set of strings element by element is not.


def _pack(numbers: np.ndarray) -> bytes:
    return np.unique(numbers).astype(np.int64).tobytes()


def _unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.int64)


def _contains(sorted_ids: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not len(sorted_ids):
        return np.zeros(len(queries), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, queries), len(sorted_ids) - 1)
    return sorted_ids[pos] == queries


class Products(_Queries):
    def __init__(self, source, cfg, classes: expand.ClassSets):
        super().__init__(source, cfg)
        self.classes = classes

    def process(self, taxa: list[str]):
        results = self.batched(lambda c, b: expand.fetch_products(c, b, self.classes), taxa)
        hops = [tuple(h) for part in results for h in part]
        if hops:
            yield hops


class Claims(_Queries):
    """A list of ids -> one dict id -> statements, plus the items they name on "referenced"."""

    def process(self, entity_ids: list[str]):
        claims: expand.Claims = {}
        for part in self.batched(lambda c, b: expand.fetch_claims(c, self.cfg, b), entity_ids):
            claims.update(part)
        yield claims
        yield beam.pvalue.TaggedOutput("referenced", sorted(expand.referenced_ids(claims, self.cfg)))


class Texts(_Queries):
    def __init__(self, source, cfg, labels_only: bool):
        super().__init__(source, cfg)
        self.labels_only = labels_only

    def process(self, entity_ids: list[str]):
        found: dict[str, expand.Texts] = {}
        for part in self.batched(
            lambda c, b: expand.fetch_texts(c, self.cfg, b, self.labels_only), entity_ids
        ):
            found.update(part)
        yield {e: (t.labels, t.aliases, t.descriptions) for e, t in found.items()}  # plain data for the coder


def _add_level(before: bytes, level: list[list[Node]], depth: int, started: float) -> bytes:
    """seen ∪ this level's ids; also the progress line of the expansion."""
    new = [n[0] for nodes in level for n in nodes]
    if not new:
        return before
    log.info(
        "depth %2d: %7d new entities, %8d so far (%.1f s)",
        depth,
        len(new),
        len(before) // 8 + len(new),
        time.time() - started,
    )
    return _pack(np.concatenate([_unpack(before), np.fromiter(map(ids.numeric, new), np.int64, len(new))]))


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _gather(label: str, **pcolls):
    """All elements of the named collections as one dict of lists (a CoGroupByKey on one key)."""
    keyed = {name: pc | f"{label}Key{name}" >> beam.Map(lambda x: (None, x)) for name, pc in pcolls.items()}
    return (
        keyed
        | label >> beam.CoGroupByKey()
        | f"{label}Lists" >> beam.Map(lambda kv: {name: list(values) for name, values in kv[1].items()})
    )


def _graph(parts: dict, started: float) -> expand.Graph:
    graph = expand.Graph.build(
        (n for level in parts["nodes"] for n in level),
        (expand.Hop(*h) for hops in parts["hops"] for h in hops),
        (expand.Hop(*h) for hops in parts["products"] for h in hops),
    )
    graph.traversal_seconds = round(time.time() - started, 2)
    return graph


def _selected_chunks(graph: expand.Graph, cfg: expand.ExpandConfig) -> list[list[str]]:
    selected = graph.selected(cfg.min_sitelinks)
    log.info(
        "fetching details of %d entities with >= %d sitelinks (of %d traversed)",
        len(selected),
        cfg.min_sitelinks,
        len(graph.depth),
    )
    return _chunks(selected, cfg.batch_size * cfg.concurrency)


def _needed_labels(parts: dict, cfg: expand.ExpandConfig) -> list[list[str]]:
    (graph,) = parts["graph"]
    selected = graph.selected(cfg.min_sitelinks)
    need = graph.label_ids_needed(selected, cfg.natural_types)
    need.update(i for ids_ in parts["referenced"] for i in ids_)
    need.difference_update(selected)
    return _chunks(sorted(need, key=ids.numeric), cfg.batch_size * cfg.concurrency)


@dataclass(frozen=True)
class StagedPaths:
    entities: str
    stats: str


class Assemble(beam.DoFn):
    """Everything gathered -> entities, written with their stats to staging names (the driver
    renames them after checking the stats)."""

    def __init__(self, cfg: expand.ExpandConfig, staged: StagedPaths, started: float):
        self.cfg, self.staged, self.started = cfg, staged, started

    def process(self, parts: dict):
        (graph,) = parts["graph"]
        selected = graph.selected(self.cfg.min_sitelinks)
        texts: dict = {}
        for d in parts["labels"] + parts["texts"]:
            texts.update((e, expand.Texts(*t)) for e, t in d.items())
        claims: dict = {}
        for d in parts["claims"]:
            claims.update(d)
        entities = expand.assemble(graph, selected, texts, claims, self.cfg)
        stats = {
            "traversed": len(graph.depth),
            "products": len(graph.products),
            "selected": len(selected),
            "entities": len(entities),
            "without_label": len(selected) - len(entities),
            "max_depth_reached": max(graph.depth.values(), default=0),
            "unexplored_at_max_depth": sum(parts["unexplored"]),
            "per_natural_type": dict(Counter(e.natural_type_label for e in entities).most_common()),
            "per_kind": dict(Counter(e.kind for e in entities).most_common()),
            "per_root": dict(Counter(e.root for e in entities).most_common()),
            "traversal_seconds": graph.traversal_seconds,
            "seconds": round(time.time() - self.started, 2),
        }
        with FileSystems.create(self.staged.entities) as f:
            f.write("".join(records.to_json(e) + "\n" for e in entities).encode())
        with FileSystems.create(self.staged.stats) as f:
            f.write(json.dumps(stats, indent=2, sort_keys=True).encode())
        yield len(entities)


def build(
    p: beam.Pipeline,
    source: KGSource,
    cfg: expand.ExpandConfig,
    root_links: dict[str, int],
    classes: expand.ClassSets,
    staged: StagedPaths,
    started: float,
) -> None:
    """Add the expansion to pipeline `p`. `cfg` must be resolved; `root_links` from `expand.root_check`,
    `classes` from `expand.fetch_class_sets`."""
    level = p | "Roots" >> beam.Create([[(r, 0, r, root_links.get(r, 0)) for r in cfg.roots]])
    levels, edges = [level], []
    # Everything discovered so far as one set-valued element: one pickled set per level is far
    # cheaper than re-reading every earlier level as a side input.
    seen = p | "Seen0" >> beam.Create([_pack(np.array([ids.numeric(r) for r in cfg.roots]))])
    for depth in range(1, cfg.max_depth + 2):
        # depth max_depth+1 is only probed: anything new there means the expansion was cut short.
        hop = beam.ParDo(OneHop(source, cfg, classes)).with_output_types(tuple[int, list])
        hops = level | f"Hop{depth}" >> hop.with_outputs("edges", main="children")
        level = (
            hops.children
            | f"Group{depth}" >> beam.GroupByKey()
            | f"New{depth}" >> beam.ParDo(NewNodes(depth, cfg.roots), beam.pvalue.AsSingleton(seen))
        )
        if depth > cfg.max_depth:
            unexplored = level | "CountUnexplored" >> beam.Map(len)
            break
        edges.append(hops.edges)
        levels.append(level)
        seen = seen | f"Seen{depth}" >> beam.Map(_add_level, beam.pvalue.AsList(level), depth, started)

    nodes = levels | "AllNodes" >> beam.Flatten()
    hops = edges | "AllEdges" >> beam.Flatten()
    if cfg.mode == "living" and cfg.product_classes and cfg.product_roots:
        product_roots = set(cfg.product_roots)
        product_hops = (
            nodes
            | "PlantTaxa" >> beam.Map(lambda level: [n[0] for n in level if n[2] in product_roots])
            | "Fruits" >> beam.ParDo(Products(source, cfg, classes))
        )
    else:
        product_hops = p | "NoProducts" >> beam.Create([])

    gathered = _gather("GatherGraph", nodes=nodes, hops=hops, products=product_hops)
    graph = gathered | "Graph" >> beam.Map(_graph, started)
    selected = graph | "Selected" >> beam.FlatMap(_selected_chunks, cfg)
    claims = selected | "Claims" >> beam.ParDo(Claims(source, cfg)).with_outputs("referenced", main="claims")
    texts = selected | "Texts" >> beam.ParDo(Texts(source, cfg, False))
    labels = (
        _gather("GatherNeeded", graph=graph, referenced=claims.referenced)
        | "NeededLabels" >> beam.FlatMap(_needed_labels, cfg)
        | "Labels" >> beam.ParDo(Texts(source, cfg, True))
    )
    (
        _gather(
            "GatherAll", graph=graph, claims=claims.claims, texts=texts, labels=labels, unexplored=unexplored
        )
        | "Assemble" >> beam.ParDo(Assemble(cfg, staged, started))
    )


def run(source: KGSource, cfg: expand.ExpandConfig, out_dir: str, beam_args: list[str] | None = None) -> dict:
    """Expand and write `out_dir/entities.jsonl` atomically; return the stats.

    Raises an EntityNetError (one clear line) for bad roots, an unreachable or broken endpoint,
    a malformed KG file, or an expansion cut short by `max_depth`; nothing is left half-written.
    """
    started = time.time()
    cfg = cfg.resolved()
    client = source.open()
    with PipelineOutput(out_dir, "entitynet-expand-", "kg expand") as out:
        root_links = expand.root_check(client, cfg, source.describe())
        classes = expand.fetch_class_sets(client, cfg)
        staged = StagedPaths(out.staged(ENTITIES), out.staged(STATS))
        log.info(
            "expanding %s from %s (%s mode); building a pipeline of %d levels",
            source.describe(),
            ", ".join(cfg.roots),
            cfg.mode,
            cfg.max_depth,
        )
        run_pipeline(lambda p: build(p, source, cfg, root_links, classes, staged, started), beam_args)
        stats = json.loads(out.store.read(staged.stats) or b"null")
        if not isinstance(stats, dict):
            raise KGError(f"the pipeline's stats file {staged.stats} is missing; re-run the expansion")
        if stats["unexplored_at_max_depth"]:
            raise KGError(
                f"expansion reached max depth {cfg.max_depth} with {stats['unexplored_at_max_depth']} entities "
                "below it still unexplored; raise --max-depth"
            )
        stats["seconds"] = round(time.time() - started, 2)
        doc = {"source": source.describe(), "expand": cfg.to_dict(), "beam_args": list(beam_args or [])}
        out.store.write(out.store.join(out.local_dir, CONFIG), _json_bytes(doc))
        out.store.write(out.store.join(out.local_dir, STATS), _json_bytes(stats))
        out.finish()
        FileSystems.rename([staged.entities], [FileSystems.join(out_dir, ENTITIES)])
    return stats


def _json_bytes(doc) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
