"""Expand a knowledge graph into `entities.jsonl`, level by level, as an Apache Beam pipeline.

    entitynet kg expand --kg-file entitynet/data/sample_kg.ttl --out out/kg
    entitynet kg expand --endpoint qlever --mode living --min-sitelinks 5 --out out/kg \\
        -- --runner=DataflowRunner --project=... --region=... --temp_location=gs://...

The walk from the roots runs first, in the driver (`entitynet.kg.traverse`: one closure query,
or level by level, `--strategy auto|closure|levels`; it waits on the endpoint, not on CPU, and
ends at the graph's real depth). Then the pipeline fetches what the selected entities need:

    graph (staged as graph.json) ─► selected = sitelinks >= min ─► batched claims + texts of the selected
          ─► labels of their ancestors and attribute values
          ─► assemble, sort, write entities.jsonl + expand_stats.json

Every detail query is a batch of ids in a VALUES block, so no single query has to survive a public
endpoint's timeout. Elements are lists (a batch of ids, a dict of details), not single entities,
which keeps Beam's per-element cost out of the way; each DoFn splits its list into query batches
and runs them on a small thread pool. The DoFns are thin adapters over `entitynet.kg.expand`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import apache_beam as beam

from beam_pipelines.common import PipelineOutput, run_pipeline
from entitynet import records
from entitynet.errors import KGError
from entitynet.kg import expand, ids, traverse
from entitynet.kg.client import KGSource
from entitynet.storage import STORE

log = logging.getLogger("entitynet.expand")

ENTITIES = "entities.jsonl"
STATS = "expand_stats.json"
CONFIG = "expand_config.json"
GRAPH = "graph.json"  # the walk's graph, staged in the output for the workers (removed at the end)


def write_graph(path: str, graph: expand.Graph) -> None:
    """The walk's graph as one JSON file, which the pipeline reads (`read_graph`) instead of carrying
    it in its job graph."""
    doc = {
        "depth": graph.depth,
        "root": graph.root,
        "sitelinks": graph.sitelinks,
        "parents": graph.parents,
        "products": sorted(graph.products, key=ids.numeric),
        "traversal_seconds": graph.traversal_seconds,
    }
    STORE.write(path, json.dumps(doc).encode())


def read_graph(path: str) -> expand.Graph:
    data = STORE.read(path)
    if data is None:
        raise KGError(f"the walk's graph {path} is missing; re-run the expansion")
    doc = json.loads(data)
    return expand.Graph(
        depth=doc["depth"],
        root=doc["root"],
        sitelinks=doc["sitelinks"],
        parents=doc["parents"],
        products=set(doc["products"]),
        traversal_seconds=doc["traversal_seconds"],
    )


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


class Claims(_Queries):
    """A list of ids -> one dict id -> statements, plus the items they name on "referenced"."""

    def process(self, entity_ids: list[str]):
        claims: expand.Claims = {}
        for part in self.batched(lambda c, b: expand.fetch_claims(c, self.cfg, b), entity_ids):
            claims.update(part)
        yield claims
        yield beam.pvalue.TaggedOutput("referenced", sorted(expand.referenced_ids(claims, self.cfg)))


class LineageClaims(_Queries):
    """A list of ancestor ids -> one dict id -> their taxon name and rank statements."""

    def process(self, entity_ids: list[str]):
        claims: expand.Claims = {}
        for part in self.batched(expand.fetch_lineage_claims, entity_ids):
            claims.update(part)
        yield claims


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

    def __init__(self, cfg: expand.ExpandConfig, staged: StagedPaths, started: float, walked: dict):
        self.cfg, self.staged, self.started, self.walked = cfg, staged, started, walked

    def process(self, parts: dict):
        (graph,) = parts["graph"]
        selected = graph.selected(self.cfg.min_sitelinks)
        texts: dict = {}
        for d in parts["labels"] + parts["texts"]:
            texts.update((e, expand.Texts(*t)) for e, t in d.items())
        claims: dict = {}
        for d in parts["lineage"] + parts["claims"]:  # ancestors' taxon names and ranks, then the selected
            claims.update(d)
        entities = expand.assemble(graph, selected, texts, claims, self.cfg)
        stats = {
            "traversed": len(graph.depth),
            "products": len(graph.products),
            "selected": len(selected),
            "entities": len(entities),
            "without_label": len(selected) - len(entities),
            "max_depth_reached": max(graph.depth.values(), default=0),
            **self.walked,
            "per_natural_type": dict(Counter(e.natural_type_label for e in entities).most_common()),
            "per_kind": dict(Counter(e.kind for e in entities).most_common()),
            "per_root": dict(Counter(e.root for e in entities).most_common()),
            "traversal_seconds": graph.traversal_seconds,
            "seconds": round(time.time() - self.started, 2),
        }
        STORE.write(self.staged.entities, "".join(records.to_json(e) + "\n" for e in entities).encode())
        STORE.write(self.staged.stats, json.dumps(stats, indent=2, sort_keys=True).encode())
        yield len(entities)


def build(
    p: beam.Pipeline,
    source: KGSource,
    cfg: expand.ExpandConfig,
    graph: str,
    staged: StagedPaths,
    started: float,
    walked: dict,
) -> None:
    """Add the detail fetch and the assembly to pipeline `p`. `cfg` must be resolved; `graph` is the
    path of the walk's graph (`traverse.traverse` + `expand.Graph.build`, written by `write_graph`),
    read by a worker: the job graph holds its path, not the graph; `walked` (a few facts about the
    walk) goes into the stats."""
    graph = p | "GraphFile" >> beam.Create([graph]) | "Graph" >> beam.Map(read_graph)
    selected = graph | "Selected" >> beam.FlatMap(_selected_chunks, cfg)
    claims = selected | "Claims" >> beam.ParDo(Claims(source, cfg)).with_outputs("referenced", main="claims")
    texts = selected | "Texts" >> beam.ParDo(Texts(source, cfg, False))
    needed = _gather(
        "GatherNeeded", graph=graph, referenced=claims.referenced
    ) | "NeededLabels" >> beam.FlatMap(_needed_labels, cfg)
    labels = needed | "Labels" >> beam.ParDo(Texts(source, cfg, True))
    lineage = needed | "LineageClaims" >> beam.ParDo(LineageClaims(source, cfg))
    (
        _gather("GatherAll", graph=graph, claims=claims.claims, texts=texts, labels=labels, lineage=lineage)
        | "Assemble" >> beam.ParDo(Assemble(cfg, staged, started, walked))
    )


def run(
    source: KGSource,
    cfg: expand.ExpandConfig,
    out_dir: str,
    beam_args: list[str] | None = None,
    strategy: str = "auto",
    closure_timeout: float = 60.0,
) -> dict:
    """Expand and write `out_dir/entities.jsonl` atomically; return the stats.

    `strategy`: how the walk learns each level's children (`entitynet.kg.traverse`); every
    strategy gives the same entities. Raises an EntityNetError (one clear line) for bad roots, an
    unreachable or broken endpoint, a malformed KG file, or an expansion cut short by `max_depth`;
    nothing is left half-written.
    """
    started = time.time()
    defaulted = not cfg.roots
    cfg = cfg.resolved()
    traverse.check_strategy(strategy)  # before any query
    client = source.open()
    with PipelineOutput(out_dir, "entitynet-expand-", "kg expand", earlier=(CONFIG,)) as out:
        root_links = expand.root_check(client, cfg, source.describe(), defaulted)
        if len(root_links) < len(cfg.roots):  # default roots the graph does not hold
            log.info(
                "the graph lacks root %s; expanding %s",
                ", ".join(set(cfg.roots) - set(root_links)),
                ", ".join(root_links),
            )
            cfg = dataclasses.replace(cfg, roots=tuple(root_links))
        classes = expand.fetch_class_sets(client, cfg)
        staged = StagedPaths(out.staged(ENTITIES), out.staged(STATS))
        log.info(
            "expanding %s from %s (%s mode, strategy %s)",
            source.describe(),
            ", ".join(cfg.roots),
            cfg.mode,
            strategy,
        )
        walked = traverse.traverse(
            source, client, cfg, root_links, classes, strategy, closure_timeout, started
        )
        if walked.unexplored:
            raise KGError(
                f"expansion reached max depth {cfg.max_depth} with {walked.unexplored} entities "
                "below it still unexplored; raise --max-depth"
            )
        graph = expand.Graph.build(
            walked.nodes, walked.hops, traverse.product_hops(client, cfg, classes, walked.nodes)
        )
        graph.traversal_seconds = round(time.time() - started, 2)
        if not graph.selected(cfg.min_sitelinks):
            raise KGError(expand.nothing_selected(graph, cfg, source.describe()))
        log.info(
            "walked %d entities by %s (%d traversal queries) in %.1f s",
            len(graph.depth),
            walked.strategy,
            walked.queries,
            graph.traversal_seconds,
        )
        facts = {
            "strategy": walked.strategy,
            "strategy_asked": strategy,
            "closure_fallback_reason": walked.fallback_reason,
            "traversal_queries": walked.queries,
            "unexplored_at_max_depth": 0,
        }
        graph_file = out.staged(GRAPH)
        write_graph(graph_file, graph)
        run_pipeline(lambda p: build(p, source, cfg, graph_file, staged, started, facts), beam_args)
        stats = json.loads(out.store.read(staged.stats) or b"null")
        if not isinstance(stats, dict):
            raise KGError(f"the pipeline's stats file {staged.stats} is missing; re-run the expansion")
        if not stats.get("entities"):
            raise KGError(
                f"none of the {stats.get('selected', 0):,} selected entities in {source.describe()} has a "
                f"label in {', '.join(cfg.languages)}; add rdfs:label to the graph or name its language "
                "with --language"
            )
        stats["seconds"] = round(time.time() - started, 2)
        doc = {
            "source": source.describe(),
            "expand": cfg.to_dict(),
            "strategy": strategy,
            "beam_args": list(beam_args or []),
        }
        out.store.write(out.store.join(out.local_dir, CONFIG), _json_bytes(doc))
        out.store.write(out.store.join(out.local_dir, STATS), _json_bytes(stats))
        out.finish()
        STORE.rename(staged.entities, STORE.join(out_dir, ENTITIES))
    return stats


def _json_bytes(doc) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
