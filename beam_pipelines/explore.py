"""Explore: a harvest or a curated dataset as a static site to look at, entity by entity (Beam).

    entitynet explore demo-out/curated --entities demo-out/kg/entities.jsonl \\
        --queries demo-out/queries/queries.jsonl --eval demo-out/train --out demo-out/explorer

Graph:

    harvest shards ─► Thumb (a JPEG thumbnail per record, written beside the site; the record
                     goes on without its image bytes)
    [curated] curated shards ─► keys (+ "after" counts);  removed/*.jsonl ─► (key, Removal)
        ─► CoGroupByKey(key) ─► View (entitynet.explore.rows: the image's row, its counts)
        ─► CombinePerKey(count per (entity, status)) [side input, bounded by the entities]
        ─► ((entity, status, page by key digest), row) ─► GroupByKey ─► WritePage (sorted by key)
    [--embeddings] the index's rows, in spans ─► Neighbours (each row's nearest other rows, from
        the index beside the embeddings: entitynet.embedindex) ─► (key, (embedding, neighbours))
        joined in JoinStatus: each row shows its neighbours; View also emits (entity, (key,
        status, embedding)) ─► Top.PerKey(MAP_MAX by key digest) ─► WriteMap (PCA to 2-D,
        one file per entity: memory bounded by MAP_MAX embeddings per entity)
    candidates/*.jsonl + outcomes/*.jsonl ─► CoGroupByKey(url) ─► counts per entity and outcome
    counts ─► CombineGlobally(sum) ─► finish: the summed counts and pages per entity, from which the
           driver writes data/index.js (one row per entity + the summary; an entity without images
           is listed too, with why: `rows.no_images`)

A worker holds one page of rows at a time; only counts reach the finish. The site is a local
directory (the DirectRunner's workers share its disk).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np

from beam_pipelines.common import ReadShard, SumCounters, run_pipeline, shard_inputs
from entitynet import embedindex, records, shards
from entitynet.errors import ConfigError
from entitynet.explore import evals, rows, site
from entitynet.harvest import NOT_FETCHED
from entitynet.images.thumbnail import THUMB_SIZE, thumbnail
from entitynet.links import KEEP
from entitynet.locks import OutputLock
from entitynet.records import Candidate, Entity, Outcome, Removal, read_jsonl
from entitynet.storage import STORE, is_remote

log = logging.getLogger("entitynet.explore")


class Thumb(beam.DoFn):
    """(split, record) -> (key, record without its image bytes), its thumbnail written (kept when
    an earlier build of the site made it: thumbnails are content keyed)."""

    def __init__(self, site_dir: str, size: int):
        self.site_dir, self.size = site_dir, size

    def process(self, item):
        _, r = item
        path = os.path.join(self.site_dir, site.thumb_path(r.key, self.size))
        if not os.path.exists(path):
            try:
                small = thumbnail(r.jpeg, self.size)
            except (OSError, ValueError, SyntaxError):
                small = None  # an image Pillow cannot decode: the page shows the record without it
            if small is not None:
                STORE.write(path, small)  # a full disk or a permission error stops the build
        yield r.key, dataclasses.replace(r, jpeg=b"")


class Neighbours(beam.DoFn):
    """(start, stop): a span of rows of the index of `emb_dir` -> (key, (image embedding, its `k`
    nearest other records as [[key, score], ...])) for each row. The index is opened once per
    worker (memory-mapped)."""

    SPAN = 1024  # rows searched at once

    def __init__(self, emb_dir: str, k: int):
        self.emb_dir, self.k = emb_dir, k

    def setup(self):
        self.index = embedindex.EmbeddingIndex(self.emb_dir)

    def process(self, span):
        start, stop = span
        ix = self.index
        for row, hits in zip(range(start, stop), ix.neighbours(start, stop, self.k), strict=True):
            near = [[ix.key(r), round(score, 4)] for score, r in hits]
            yield ix.key(row), (np.array(ix.vectors[row]), near)


def index_spans(n: int):
    """(start, stop) spans of Neighbours.SPAN rows over an index of `n` rows."""
    for start in range(0, n, Neighbours.SPAN):
        yield start, min(start + Neighbours.SPAN, n)


class View(beam.DoFn):
    """(key, {record, kept, removed[, embedding]}) -> ((entity, status), row) for each entity the
    record is linked to; its counts on "counts"; with embeddings, the row shows its neighbours and
    (entity, (key, status, embedding)) goes on "points" for the entity's map. The query texts
    (query id -> text) are read once per worker from the JSON file `queries` ("": none)."""

    def __init__(self, size: int, curated: bool, queries: str, embedded: bool = False):
        self.size, self.curated, self.queries_file = size, curated, queries
        self.embedded = embedded

    def setup(self):
        data = STORE.read(self.queries_file) if self.queries_file else None
        self.queries = json.loads(data) if data else {}

    def process(self, kv):
        _, joined = kv
        removals = list(joined["removed"])
        emb = next(iter(joined.get("embedding", ())), None)
        for r in joined["record"]:
            kept = bool(list(joined["kept"])) if self.curated else None
            row = rows.image_row(r, site.thumb_path(r.key, self.size), kept, removals, self.queries)
            counts = rows.record_counts(r, kept, removals)
            if self.embedded:
                row["neighbours"] = emb[1] if emb is not None else None
                if emb is not None:
                    counts += rows.embedded_counts(r)
            yield beam.pvalue.TaggedOutput("counts", counts)
            status = rows.status_of(kept)
            for e in r.entity_ids:
                yield (e, status), row
                if emb is not None:
                    yield beam.pvalue.TaggedOutput("points", (e, (r.key, status, emb[0])))


def _file_lines(path: str):
    """The non-empty lines of a text file (local or in a bucket), streamed."""
    import io

    with io.TextIOWrapper(STORE.open(path), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


def _lines(p, label: str, paths: list[str], parse):
    if not paths:
        return p | f"No{label}" >> beam.Create([])
    return (
        p
        | f"{label}Files" >> beam.Create(paths)
        | f"Read{label}" >> beam.FlatMap(_file_lines)
        | f"Parse{label}" >> beam.Map(parse)
    )


def build(p, inputs: dict, queries: str, opts: dict, out_dir: str, staged: str) -> None:
    """`inputs`: the dataset's files (`inputs_of`); `queries`: the path of a JSON file of the query
    texts by id ("": none). The graph holds paths and options; the finish writes the summed counts
    and the pages per (entity, status) to `staged`, from which the driver makes the index."""
    size, page_size, curated = opts["thumb_size"], opts["page_size"], bool(inputs["curated"])
    recs = (
        p
        | "HarvestShards" >> beam.Create(inputs["harvest"])
        | "ReadHarvest" >> beam.ParDo(ReadShard())
        | "Thumb" >> beam.ParDo(Thumb(out_dir, size))
    )
    curated_recs = (
        p | "CuratedShards" >> beam.Create(inputs["curated"]) | "ReadCurated" >> beam.ParDo(ReadShard())
    )
    kept = curated_recs | "KeptKey" >> beam.Map(lambda sr: (sr[1].key, True))
    removed = _lines(p, "Removed", inputs["removed"], lambda line: records.from_json(Removal, line)) | (
        "RemovedByKey" >> beam.Map(lambda rm: (rm.key, rm))
    )
    joins = {"record": recs, "kept": kept, "removed": removed}
    emb_dir = opts.get("embeddings") or ""
    if emb_dir:
        joins["embedding"] = (
            p
            | "IndexSize" >> beam.Create([inputs["index_records"]])  # the graph holds a count, not the spans
            | "IndexSpans" >> beam.FlatMap(index_spans)
            | "SpreadSpans" >> beam.Reshuffle()
            | "Neighbours" >> beam.ParDo(Neighbours(emb_dir, opts["neighbours"]))
        )
    viewed = (
        joins
        | "JoinStatus" >> beam.CoGroupByKey()
        | "View"
        >> beam.ParDo(View(size, curated, queries, bool(emb_dir)))
        .with_output_types(tuple[tuple[str, str], dict])
        .with_outputs("counts", "points", main="rows")
    )
    if emb_dir:

        def write_map(kv):
            e, points = kv
            site.write_data(STORE, out_dir, site.map_path(e), rows.entity_map(e, points))
            yield e

        (
            viewed.points
            | "MapSample" >> beam.combiners.Top.PerKey(rows.MAP_MAX, key=lambda p: -rows.map_rank(p[0]))
            | "WriteMap" >> beam.FlatMap(write_map)
        )
    per_page = viewed.rows | "CountPerEntity" >> beam.combiners.Count.PerKey()

    def to_page(item, pages):
        (e, status), row = item
        return (e, status, site.page_of(row["key"], site.pages_of(pages[(e, status)], page_size))), row

    def write_page(kv):
        (e, status, page), page_rows = kv
        name = site.page_path(e, status, page)
        body = {
            "entity": e,
            "status": status,
            "page": page,
            "rows": sorted(page_rows, key=lambda r: r["key"]),
        }
        site.write_data(STORE, out_dir, name, body)
        yield name

    (
        viewed.rows
        | "ToPage" >> beam.Map(to_page, beam.pvalue.AsDict(per_page))
        | "ByPage" >> beam.GroupByKey()
        | "WritePage" >> beam.FlatMap(write_page)
    )

    def as_candidate(line):
        c = records.from_json(Candidate, line)
        return c.url, c

    def as_outcome(line):
        o = Outcome(**json.loads(line))
        return o.url, o

    def candidate_counts(kv):
        _, joined = kv
        outcomes = list(joined["outcome"])
        for c in joined["candidate"]:
            yield rows.candidate_counts(c, outcomes[0] if outcomes else None)

    found = (
        {
            "candidate": _lines(p, "Candidates", inputs["candidates"], as_candidate),
            "outcome": _lines(p, "Outcomes", inputs["outcomes"], as_outcome),
        }
        | "JoinOutcomes" >> beam.CoGroupByKey()
        | "CandidateCounts" >> beam.FlatMap(candidate_counts)
    )
    after = curated_recs | "AfterCounts" >> beam.Map(lambda sr: rows.curated_counts(sr[1]))
    counts = (
        (viewed.counts, found, after)
        | "AllCounts" >> beam.Flatten()
        | "Sum" >> beam.CombineGlobally(SumCounters())
    )

    def finish(_, counts_, pages_):  # both bounded by the entities
        doc = {
            "counts": [[list(k), n] for k, n in counts_.items()],
            "pages": [[list(k), site.pages_of(n, page_size)] for k, n in pages_.items()],
        }
        STORE.write(staged, json.dumps(doc, ensure_ascii=False).encode())
        yield len(doc["pages"])

    (
        p
        | "Finally" >> beam.Create([None])
        | "Finish" >> beam.FlatMap(finish, beam.pvalue.AsSingleton(counts), beam.pvalue.AsDict(per_page))
    )


def _read_json(path: str, what: str) -> dict:
    data = STORE.read(path)
    try:
        if data is None:
            raise ValueError("no such file")
        return json.loads(data)
    except ValueError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e}); run that stage again") from None


def _absolute(path: str) -> str:
    return path if is_remote(path) else str(Path(path).resolve())


def inputs_of(data_dir: str) -> tuple[dict, dict]:
    """What a build reads, from the dataset's own metadata (local or in a bucket): (inputs,
    summary). A curated dataset names its harvest (`curation_stats.json`'s input)."""
    root = data_dir.rstrip("/") if is_remote(data_dir) else data_dir
    curation = STORE.join(root, shards.CURATION_STATS)
    summary: dict = {"dir": _absolute(root)}
    curated = STORE.isfile(curation)
    if curated:
        cstats = _read_json(curation, "curation stats")
        if cstats.get("output") != "shards":
            raise ConfigError(f"{data_dir} is a curated subset (subset.npz), not shards; explore its harvest")
        found = shards.harvest_of(root, str(cstats.get("input", "")))
        if found is None:
            raise ConfigError(
                f"{data_dir}: the harvest it was curated from ({cstats.get('input')}) is not there any more; "
                "give the harvest's directory to `entitynet explore` instead, or move it back"
            )
        harvest_dir = found
        curated_inputs, _, _ = shard_inputs(root, allow_empty=True)
        entries = {}
        counts = STORE.read(STORE.join(root, shards.ENTRY_COUNTS))
        if counts is not None:
            for line in counts.decode("utf-8").splitlines()[1:]:
                e, _, before, after = line.split("\t")
                entries[e] = (int(before), int(after))
        removed = [STORE.join(root, n) for n in cstats.get("files", {}).get(shards.REMOVED_DIR, [])]
        summary["curation"] = {
            k: cstats.get(k)
            for k in ("read", "kept", "removed", "contamination", "per_license", "per_source")
        }
    elif STORE.isfile(STORE.join(root, shards.HARVEST_STATS)):
        harvest_dir, curated_inputs, entries, removed = root, [], None, []
    else:
        raise ConfigError(
            f"{data_dir} is neither a harvest ({shards.HARVEST_STATS}) nor a curated dataset "
            f"({shards.CURATION_STATS}); give the --out of `entitynet harvest` or `entitynet curate`"
        )
    hstats = _read_json(STORE.join(harvest_dir, shards.HARVEST_STATS), "harvest stats")
    harvest_inputs, _, total = shard_inputs(harvest_dir, allow_empty=True)
    files = hstats.get("files", {})
    summary["harvest_dir"] = _absolute(harvest_dir)
    summary["kind"] = "curated" if curated else "harvest"
    summary["harvest"] = {
        k: hstats.get(k) for k in ("candidates", "fetched", "written", "success_rate", "per_outcome")
    } | {"records": total, "per_license": hstats.get("per_license"), "per_source": hstats.get("per_source")}
    inputs = {
        "harvest": harvest_inputs,
        "curated": curated_inputs,
        "removed": removed,
        "entries": entries,
        "candidates": [STORE.join(harvest_dir, n) for n in files.get("candidates", [])],
        "candidates_known": isinstance(files.get("candidates"), list),
        "outcomes": [STORE.join(harvest_dir, n) for n in files.get("outcomes", [])],
    }
    return inputs, summary


def run(
    data_dir: str,
    entities: str | Sequence[Entity],
    out_dir: str,
    queries: dict[str, str] | None = None,
    eval_paths: list[str] = (),
    thumb_size: int = THUMB_SIZE,
    page_size: int = site.PAGE_SIZE,
    beam_args: list[str] | None = None,
    embeddings: str | None = None,
    say=None,
    left_out: Sequence[Entity] = (),
) -> dict:
    """Build the explorer site of `data_dir` into `out_dir`; returns what it holds. `entities`: the
    path of entities.jsonl, or the entities; the driver makes the index of them from the pipeline's
    counts. `queries` (query id -> text) go to a staged file that the workers read: the job graph
    holds no data. `embeddings`: an `entitynet embed` output of the dataset (or of its harvest):
    each image then shows its nearest neighbours, each entity a map of its images; its index is
    built first when it has none or a stale one (`say` tells which, one line). `left_out`: entities
    `kg classify` judged not visual, listed on the index with why."""
    started = time.time()
    inputs, summary = inputs_of(data_dir)
    # checked before any work; one page per evaluation even when given twice
    result_dirs = list(dict.fromkeys(d.resolve() for path in eval_paths for d in evals.eval_dirs(path)))
    if os.path.abspath(out_dir) in {os.path.abspath(data_dir), summary["harvest_dir"]}:
        raise ConfigError(f"--out {out_dir} is the dataset itself; give a directory of its own")
    say = say or (lambda line: log.warning("%s", line))
    index_manifest = None
    if embeddings:
        if is_remote(embeddings):
            raise ConfigError(f"--embeddings {embeddings}: give a local `entitynet embed` output")
        covered = str(Path(embedindex.embed_config(embeddings).get("shards", "")))
        if covered not in {summary["dir"], summary["harvest_dir"]}:
            say(
                f"--embeddings {embeddings} embeds {covered}, not {data_dir} or its harvest: images it does "
                "not cover show no neighbours, and neighbours outside this dataset no thumbnail"
            )
        index_manifest = embedindex.ensure(embeddings, say=say)
        n = index_manifest["records"]
        inputs["index_records"] = n
        summary["embeddings"] = {
            "dir": _absolute(embeddings),
            "index": index_manifest["kind"],
            "records": n,
            "neighbours": rows.NEIGHBOURS,
            "map_max": rows.MAP_MAX,
        }
    opts = {"thumb_size": thumb_size, "page_size": page_size}
    built_from = {"dataset": summary["dir"], "harvest": summary["harvest_dir"], **opts}
    if embeddings:
        built_from["embeddings"] = _absolute(embeddings)
    site.check_target(out_dir)
    with OutputLock(out_dir, "explore", STORE):
        site.prepare(out_dir, built_from)
        stamp = time.time_ns()
        staged = os.path.join(out_dir, f".index-{stamp}.json")
        texts = os.path.join(out_dir, f".queries-{stamp}.json") if queries else ""
        try:
            if texts:
                STORE.write(texts, json.dumps(queries, ensure_ascii=False).encode())
            build_opts = {
                **opts,
                "embeddings": _absolute(embeddings) if embeddings else "",
                "neighbours": rows.NEIGHBOURS,
            }
            run_pipeline(lambda p: build(p, inputs, texts, build_opts, out_dir, staged), beam_args)
            found = json.loads(Path(staged).read_text(encoding="utf-8"))
        finally:
            Path(staged).unlink(missing_ok=True)
            if texts:
                Path(texts).unlink(missing_ok=True)
        counts = {tuple(k): n for k, n in found["counts"]}
        pages = {tuple(k): n for k, n in found["pages"]}
        each = read_jsonl(entities, Entity) if isinstance(entities, str) else entities
        index = rows.entity_index(
            each,
            counts,
            pages,
            inputs["entries"],
            curated=summary["kind"] == "curated",
            candidates_known=inputs["candidates_known"],
        )
        site.fill_pages(STORE, out_dir, index)  # one stat per page, nothing held
        evaluations = [evals.add_evaluation(out_dir, d) for d in result_dirs]
        site.write_data(STORE, out_dir, "data/evals.js", evaluations)
        summary.update(
            opts,
            entities=len(index),
            unimaged=sum(1 for row in index if row["no_images"]),
            evaluations=len(evaluations),
            kept_links=list(KEEP),
            not_fetched=list(NOT_FETCHED),
        )
        left = list(left_out)
        summary["left_out"] = len(left)
        site.write_data(
            STORE,
            out_dir,
            "data/index.js",
            {"summary": summary, "entities": index, "left_out": rows.left_out(left)},
        )
        site.finish(out_dir, built_from)
    return {
        "site": out_dir,
        "index": os.path.join(out_dir, "index.html"),
        "entities": len(index),
        "unimaged": summary["unimaged"],
        "left_out": summary["left_out"],
        "images": summary["harvest"]["records"],
        "evaluations": len(evaluations),
        "embedded": counts.get(("records_embedded", ""), 0) if embeddings else None,
        "mapped": sum(1 for row in index if row["map"]) if embeddings else None,
        "seconds": round(time.time() - started, 1),
    }
