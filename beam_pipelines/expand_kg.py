"""Expand a knowledge graph into `entities.jsonl`, level by level, as an Apache Beam pipeline.

    entitynet kg expand --kg-file entitynet/data/sample_kg.ttl --out out/kg
    entitynet kg expand --endpoint qlever --mode living --min-sitelinks 5 --out out/kg \\
        -- --runner=DataflowRunner --project=... --region=... --temp_location=gs://...

Graph (Beam graphs cannot loop, so the breadth-first search is unrolled to `max_depth` levels):

    roots ─► [level k: BatchElements ─► one-hop VALUES query ─► GroupByKey(child)
              ─► keep children unseen in levels < k (side inputs)] × max_depth
          ─► Flatten(nodes), Flatten(edges) ─► (living) fruits of plant taxa
          ─► one Graph (depth, root, parents) ─► selected = sitelinks >= min
          ─► batched claims + texts of the selected, labels of their ancestors and attribute values
          ─► assemble, sort, write entities.jsonl + expand_stats.json

Every query is a batch of ids in a VALUES block, so no single query has to survive a public
endpoint's timeout. The DoFns are thin adapters over `entitynet.kg.expand`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from entitynet import records
from entitynet.errors import EntityNetError, KGError
from entitynet.files import ensure_writable_dir
from entitynet.kg import expand, ids
from entitynet.kg.client import KGSource

log = logging.getLogger("entitynet.expand")

ENTITIES = "entities.jsonl"
STATS = "expand_stats.json"
CONFIG = "expand_config.json"


class _Queries(beam.DoFn):
    """Base: opens the knowledge-graph client once per DoFn instance, on the worker."""

    def __init__(self, source: KGSource, cfg: expand.ExpandConfig):
        self.source, self.cfg = source, cfg

    def setup(self):
        self.client = self.source.open()


class _ClassAware(_Queries):
    def __init__(self, source: KGSource, cfg: expand.ExpandConfig, classes: expand.ClassSets):
        super().__init__(source, cfg)
        self.classes = classes


class OneHop(_ClassAware):
    """A batch of nodes -> (child, (sitelinks, root of the parent)) for every child of those nodes.

    Every hop also goes to the "edges" output: the parents of a node are all its hops, not only
    the one that discovered it.
    """

    def process(self, batch):
        root_of = {node[0]: node[2] for node in batch}
        for hop in expand.fetch_hops(self.client, self.cfg, sorted(root_of, key=ids.numeric), self.classes):
            yield hop.child, (hop.sitelinks, root_of[hop.parent])
            yield beam.pvalue.TaggedOutput("edges", hop)


class Products(_ClassAware):
    def process(self, batch):
        yield from expand.fetch_products(self.client, sorted(batch, key=ids.numeric), self.classes)


class Claims(_Queries):
    def process(self, batch):
        yield from expand.fetch_claims(self.client, self.cfg, sorted(batch, key=ids.numeric)).items()


class Texts(_Queries):
    def __init__(self, source, cfg, labels_only: bool):
        super().__init__(source, cfg)
        self.labels_only = labels_only

    def process(self, batch):
        found = expand.fetch_texts(self.client, self.cfg, sorted(batch, key=ids.numeric), self.labels_only)
        yield from found.items()


class NewNodes(beam.DoFn):
    """(child, [(sitelinks, root)]) -> node (child, depth, root, sitelinks) unless an earlier level has it."""

    def __init__(self, depth: int, roots: tuple[str, ...]):
        self.depth, self.rank = depth, {r: i for i, r in enumerate(roots)}

    def start_bundle(self):
        self._seen = None

    def process(self, kv, earlier):
        if self._seen is None:
            self._seen = {node[0] for node in earlier}
        child, found = kv
        if child in self._seen:
            return
        found = list(found)
        root = min((r for _, r in found), key=self.rank.__getitem__)
        yield child, self.depth, root, max(n for n, _ in found)


def _batch(pcoll, label: str, size: int):
    return pcoll | label >> beam.BatchElements(min_batch_size=1, max_batch_size=size)


def _assemble(_, cfg, nodes, hops, product_hops, claims, texts, labels, unexplored, started):
    graph = expand.Graph.build(nodes, hops, product_hops)
    selected = graph.selected(cfg.min_sitelinks)
    all_texts = dict(labels)
    all_texts.update(dict(texts))
    entities = expand.assemble(graph, selected, all_texts, dict(claims), cfg)
    stats = {
        "traversed": len(graph.depth),
        "products": len(graph.products),
        "selected": len(selected),
        "entities": len(entities),
        "without_label": len(selected) - len(entities),
        "max_depth_reached": max(graph.depth.values(), default=0),
        "unexplored_at_max_depth": unexplored,
        "per_natural_type": dict(Counter(e.natural_type_label for e in entities).most_common()),
        "per_kind": dict(Counter(e.kind for e in entities).most_common()),
        "per_root": dict(Counter(e.root for e in entities).most_common()),
        "seconds": round(time.time() - started, 2),
    }
    yield entities, stats


class WriteStaged(beam.DoFn):
    """Write entities and stats to staging names; the driver renames them after checking."""

    def __init__(self, entities_path: str, stats_path: str):
        self.entities_path, self.stats_path = entities_path, stats_path

    def process(self, element):
        entities, stats = element
        with FileSystems.create(self.entities_path) as f:
            for e in entities:
                f.write(records.to_json(e).encode() + b"\n")
        with FileSystems.create(self.stats_path) as f:
            f.write(json.dumps(stats, indent=2, sort_keys=True).encode())
        yield len(entities)


@dataclass(frozen=True)
class StagedPaths:
    entities: str
    stats: str


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
    # A node is (id, depth, root, sitelinks).
    level = p | "Roots" >> beam.Create([(r, 0, r, root_links.get(r, 0)) for r in cfg.roots])
    levels, edges, seen = [level], [], level
    for depth in range(1, cfg.max_depth + 2):
        # depth max_depth+1 is only probed: anything new there means the expansion was cut short.
        hop = beam.ParDo(OneHop(source, cfg, classes)).with_output_types(tuple[str, tuple[int, str]])
        hops = _batch(level, f"Batch{depth}", cfg.batch_size) | f"Hop{depth}" >> hop.with_outputs(
            "edges", main="children"
        )
        level = (
            hops.children
            | f"Group{depth}" >> beam.GroupByKey()
            | f"New{depth}" >> beam.ParDo(NewNodes(depth, cfg.roots), beam.pvalue.AsList(seen))
        )
        if depth > cfg.max_depth:
            unexplored = level | "CountUnexplored" >> beam.combiners.Count.Globally()
            break
        edges.append(hops.edges)
        levels.append(level)
        seen = (seen, level) | f"Seen{depth}" >> beam.Flatten()

    nodes = levels | "AllNodes" >> beam.Flatten()
    hops = edges | "AllEdges" >> beam.Flatten()
    if cfg.mode == "living" and cfg.product_classes and cfg.product_roots:
        product_roots = set(cfg.product_roots)
        taxa = nodes | "PlantTaxa" >> beam.FlatMap(lambda n: [n[0]] if n[2] in product_roots else [])
        product_hops = _batch(taxa, "BatchTaxa", cfg.batch_size) | "Fruits" >> beam.ParDo(
            Products(source, cfg, classes)
        )
    else:
        product_hops = p | "NoProducts" >> beam.Create([])

    graph = (
        p
        | "Once" >> beam.Create([None])
        | "Graph"
        >> beam.Map(
            lambda _, n, h, ph: expand.Graph.build(n, h, ph),
            beam.pvalue.AsList(nodes),
            beam.pvalue.AsList(hops),
            beam.pvalue.AsList(product_hops),
        )
    )
    selected = graph | "Selected" >> beam.FlatMap(lambda g: g.selected(cfg.min_sitelinks))
    claims = _batch(selected, "BatchClaims", cfg.batch_size) | "Claims" >> beam.ParDo(Claims(source, cfg))
    texts = _batch(selected, "BatchTexts", cfg.batch_size) | "Texts" >> beam.ParDo(Texts(source, cfg, False))
    ancestors = graph | "Ancestors" >> beam.FlatMap(
        lambda g: sorted(
            g.label_ids_needed(g.selected(cfg.min_sitelinks), cfg.natural_types), key=ids.numeric
        )
    )
    values = claims | "Referenced" >> beam.FlatMap(lambda kv: expand.referenced_ids({kv[0]: kv[1]}, cfg))
    labels = (
        (ancestors, values)
        | "NeedLabels" >> beam.Flatten()
        | "Distinct" >> beam.Distinct()
        | "BatchLabels" >> beam.BatchElements(min_batch_size=1, max_batch_size=cfg.batch_size)
        | "Labels" >> beam.ParDo(Texts(source, cfg, True))
    )
    (
        p
        | "Finally" >> beam.Create([None])
        | "Assemble" >> beam.FlatMap(
            _assemble, cfg,
            beam.pvalue.AsList(nodes), beam.pvalue.AsList(hops), beam.pvalue.AsList(product_hops),
            beam.pvalue.AsList(claims), beam.pvalue.AsList(texts), beam.pvalue.AsList(labels),
            beam.pvalue.AsSingleton(unexplored), started,
        )
        | "Write" >> beam.ParDo(WriteStaged(staged.entities, staged.stats))
    )  # fmt: skip


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    """Standard Beam flags; DirectRunner in one process unless the flags say otherwise."""
    flags = list(beam_args or [])
    if not any(f.startswith("--direct_running_mode") for f in flags):
        flags.append("--direct_running_mode=in_memory")
    return PipelineOptions(flags=flags)


def _user_error(exc: BaseException) -> EntityNetError | None:
    """The EntityNetError behind a pipeline failure (runners wrap worker exceptions)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, EntityNetError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def run(source: KGSource, cfg: expand.ExpandConfig, out_dir: str, beam_args: list[str] | None = None) -> dict:
    """Expand and write `out_dir/entities.jsonl` atomically; return the stats.

    Raises an EntityNetError (one clear line) for bad roots, an unreachable or broken endpoint,
    a malformed KG file, or an expansion cut short by `max_depth`; nothing is left half-written.
    """
    started = time.time()
    cfg = cfg.resolved()
    client = source.open()
    if "://" not in out_dir:
        ensure_writable_dir(out_dir)
    elif not FileSystems.exists(out_dir):
        FileSystems.mkdirs(out_dir)
    root_links = expand.root_check(client, cfg, source.describe())
    classes = expand.fetch_class_sets(client, cfg)
    final = FileSystems.join(out_dir, ENTITIES)
    stamp = f".staged-{time.time_ns()}"
    staged = StagedPaths(final + stamp, FileSystems.join(out_dir, STATS) + stamp)
    options = pipeline_options(beam_args)
    try:
        try:
            with beam.Pipeline(options=options) as p:
                build(p, source, cfg, root_links, classes, staged, started)
        except Exception as e:
            err = _user_error(e)
            if err is not None:
                raise err from None
            text = str(e)
            for cls in (KGError, EntityNetError):
                marker = f"{cls.__module__}.{cls.__name__}: "
                if marker in text:
                    raise cls(text.split(marker, 1)[1].splitlines()[0]) from None
            raise
        with FileSystems.open(staged.stats) as f:
            stats = json.loads(f.read())
        if stats["unexplored_at_max_depth"]:
            raise KGError(
                f"expansion reached max depth {cfg.max_depth} with {stats['unexplored_at_max_depth']} entities "
                "below it still unexplored; raise --max-depth"
            )
        stats["seconds"] = round(time.time() - started, 2)
        with FileSystems.create(staged.stats) as f:
            f.write(json.dumps(stats, indent=2, sort_keys=True).encode())
        with FileSystems.create(FileSystems.join(out_dir, CONFIG) + stamp) as f:
            doc = {"source": source.describe(), "expand": cfg.to_dict(), "beam_args": list(beam_args or [])}
            f.write(json.dumps(doc, indent=2, sort_keys=True).encode())
        FileSystems.rename(
            [staged.entities, staged.stats, FileSystems.join(out_dir, CONFIG) + stamp],
            [final, FileSystems.join(out_dir, STATS), FileSystems.join(out_dir, CONFIG)],
        )
    finally:
        leftovers = [
            x
            for x in (staged.entities, staged.stats, FileSystems.join(out_dir, CONFIG) + stamp)
            if FileSystems.exists(x)
        ]
        if leftovers:
            FileSystems.delete(leftovers)
    return stats
