"""Nothing proportional to the data goes into a Beam job graph (Dataflow refuses graphs over
~20 MiB): the harvest (a pool, and search backends with identifier backends and a GBIF archive),
curate, kg-expand and explore pipelines are built (not run) for 1k and 100k synthetic entities,
their queries and the walk's graph written to files, and their job graphs must be the same size."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pytest

from beam_pipelines import curate, expand_kg, explore
from beam_pipelines import harvest as harvest_pipeline
from beam_pipelines.neardup import eval_index_lines
from entitynet import harvest
from entitynet.curation.evalsets import EvalSet
from entitynet.curation.plan import CurateOptions
from entitynet.kg.client import KGSource
from entitynet.kg.expand import ExpandConfig, Graph, Hop
from entitynet.records import Entity, Query, read_jsonl, write_jsonl
from entitynet.text.queries import build_queries

SMALL, LARGE = 1_000, 100_000
SLACK = 4 << 10  # bytes: names of staged files and the like, never the data
CEILING = 1 << 20  # well under Dataflow's limit


def synthetic_entities(n: int) -> list[Entity]:
    return [
        Entity(
            id=f"Q{i + 1000}",
            label=f"taxon number {i}",
            aliases=(f"alias {i}",),
            sitelinks=5,
            lineage=("animal",),
            lineage_ids=("Q729",),
            root="Q729",
            natural_type="Q729",
            natural_type_label="animal",
            gbif_id=str(5000 + i),
            inaturalist_id=str(9000 + i),
        )
        for i in range(n)
    ]


def graph_size(build) -> int:
    p = beam.Pipeline()
    build(p)
    return p.to_runner_api().ByteSize()


def sizes(root, n: int) -> dict[str, int]:
    """The job-graph size of each pipeline, built over `n` entities written under `root`."""
    root.mkdir()
    entities = synthetic_entities(n)
    queries = build_queries(entities)
    entities_file, queries_file = str(root / "entities.jsonl"), str(root / "queries.jsonl")
    write_jsonl(entities_file, entities)
    write_jsonl(queries_file, queries)
    pool = root / "pool.jsonl"
    pool.write_text(json.dumps({"url": "http://x/a.jpg", "text": "taxon number 1"}) + "\n")
    out = str(root / "out")
    opts = harvest.HarvestOptions()

    def harvest_graph(spec):
        return lambda p: harvest_pipeline.build(
            p,
            queries_file,
            spec,
            opts,
            out,
            out + "/cache",
            out + "/work",
            out + "/stats",
            entities_file,
            "d",
        )

    pool_spec = harvest.SearchSpec(backend="pool", pool=str(pool), entities_file=entities_file, balance_t=10)
    search_spec = harvest.SearchSpec(
        backend="searxng,gbif,commons,gbif-archive",
        url="http://127.0.0.1:9",
        entities_file=entities_file,
        endpoints=(("gbif", "http://127.0.0.1:9"), ("commons", "http://127.0.0.1:9")),
        gbif_archive=str(root / "dwca.zip"),
    )
    got = {"harvest-pool": graph_size(harvest_graph(pool_spec))}
    got["harvest-search"] = graph_size(harvest_graph(search_spec))

    # curate: entities by file, a subset by root, and an evaluation set that grows with the data
    evals = root / "eval.jsonl"
    ev = EvalSet("ev", np.arange(n // 10, dtype=np.uint64) * 7919)
    evals.write_text("".join(line + "\n" for line in eval_index_lines([ev])))
    copts = CurateOptions(subset_roots=("Q729",))
    got["curate"] = graph_size(
        lambda p: curate.build(
            p, [("train", str(root / "shard"))], entities_file, str(evals), copts, out, out + "/s", n, n // 10
        )
    )

    # kg expand: the walk's graph, written by the driver's writer
    walk = Graph.build(
        [(e.id, 1, "Q729", 5) for e in entities] + [("Q729", 0, "Q729", 9)],
        [Hop(e.id, "Q729", 5) for e in entities],
    )
    graph_file = str(root / "graph.json")
    expand_kg.write_graph(graph_file, walk)
    assert expand_kg.read_graph(graph_file) == walk
    got["kg-expand"] = graph_size(
        lambda p: expand_kg.build(
            p,
            KGSource(kg_files=(str(root / "kg.ttl"),)),
            ExpandConfig(roots=("Q729",)).resolved(),
            graph_file,
            expand_kg.StagedPaths(out + "/e", out + "/s"),
            0.0,
            {"strategy": "closure", "traversal_queries": 1},
        )
    )

    # explore: the query texts by file
    texts = root / "texts.json"
    texts.write_text(json.dumps({q.id: q.text for q in queries}))
    inputs = {"harvest": [], "curated": [], "removed": [], "entries": {}, "candidates": [], "outcomes": []}
    got["explore"] = graph_size(
        lambda p: explore.build(p, inputs, str(texts), {"thumb_size": 64, "page_size": 100}, out, out + "/i")
    )
    return got


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    return sizes(root / "small", SMALL), sizes(root / "large", LARGE)


@pytest.mark.parametrize("pipeline", ["harvest-pool", "harvest-search", "curate", "kg-expand", "explore"])
def test_job_graph_does_not_grow_with_the_data(measured, pipeline):
    small, large = measured
    assert large[pipeline] < CEILING, f"{pipeline}: {large[pipeline]:,} bytes at {LARGE:,} entities"
    assert abs(large[pipeline] - small[pipeline]) <= SLACK, (
        f"{pipeline}: {small[pipeline]:,} bytes at {SMALL:,} entities, {large[pipeline]:,} at {LARGE:,}"
    )


def test_a_spec_with_entities_in_memory_is_refused_by_the_pipeline(tmp_path):
    queries = tmp_path / "queries.jsonl"
    write_jsonl(queries, build_queries(synthetic_entities(2)))
    spec = harvest.SearchSpec(backend="gbif", url="http://127.0.0.1:9", entities=tuple(synthetic_entities(2)))
    with pytest.raises(ValueError, match="entities_file"):
        harvest_pipeline.build(
            beam.Pipeline(), str(queries), spec, harvest.HarvestOptions(), "o", "o/c", "o/w", "o/s"
        )


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("where", ["local", "store"])
def test_a_jsonl_file_read_in_parts_gives_every_record_once(tmp_path, parts, where):
    """Local, and through the storage layer (fsspec's in-memory store stands for a bucket)."""

    queries = build_queries(synthetic_entities(50))
    path = str(tmp_path / "queries.jsonl") if where == "local" else f"memory://sizes/{tmp_path.name}/q.jsonl"
    write_jsonl(path, queries)
    got = [q for i in range(parts) for q in harvest.read_part(path, i, parts, Query)]
    assert got == queries
    assert list(read_jsonl(path, Query)) == queries
    assert [d[1:] for d in harvest.parts_of(path)] == [(0, 1)]  # a small file is one part
