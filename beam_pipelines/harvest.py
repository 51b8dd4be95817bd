"""Harvest: from `queries.jsonl` to ArrayRecord shards readable by TFDS and Grain (Apache Beam).

    entitynet harvest --queries out/queries/queries.jsonl --backend searxng \\
        --searxng-url http://127.0.0.1:8888 --out out/shards

Graph:

    queries.jsonl ─► byte-range parts ─► ReadQueries (batches of 16)
      ─► Search (every query backend; thread pool, on-disk cache per (backend, query))
      + pool: its units ─► ReadPool (prefilter + matcher per Arrow batch)
      + gbif-archive: occurrence.txt, multimedia.txt streamed ─► CoGroupByKey(gbifID)
      + inaturalist-open-data: observations, photos ─► CoGroupByKey(observation) ─► CoGroupByKey(observer)
            ─► Flatten ─► GroupByKey(url) ─► merge ─► candidates/candidates-*.jsonl (sharded by URL)
            ─► [pool, --balance-t] entries ─► CombineGlobally(count per entry) [side input]
               ─► keep by curate's draws (+ "balanced_out" outcomes; never fetched)
            ─► [--licenses / --exclude-licenses] keep the allowed licences (+ "license_excluded")
            ─► CombinePerKey(count per host) ─► big hosts (> host_split candidates) [side input]
            ─► GroupByKey(work unit = hash of host, or of a big host's slot) ─► FetchUnit (one
               event loop per worker: safe fetch with per-host limits; image threads: decode,
               validate, resize, hash; results emitted as they end, saved in parts, reused by a
               re-run)
                 ├─► outcomes (one per failed candidate, with its reason)
                 └─► GroupByKey(content key) ─► merge exact duplicates (+ "duplicate" outcomes),
                      entity links with evidence, pruned (+ "unlinked" outcomes; entitynet.links)
                      ─► GroupByKey((split, shard)) ─► WriteShard (sorted by key, temp + rename;
                         its attribution/<shard>.tsv and records per licence and source)
    outcomes ─► outcomes/outcomes-*.jsonl (every candidate's outcome, sharded by URL)
             ─► CombinePerKey(host) ─► hosts/hosts-*.jsonl, Top(50 hosts)
    counters (outcomes, entities, size bins, links, reused units) ─► CombineGlobally(sum)
    finish (the summed counters, one row per shard and side file) ─► harvest_stats.json; TFDS metadata

No step holds a list of all candidates, outcomes or records: what reaches the finish is bounded
by the number of entities, outcome kinds, size bins and files, not by the data.
The job graph holds paths and options only: the workers read queries.jsonl and entities.jsonl
(for the pool's matcher, the identifier backends, the taxa of the archives, the pool's balancing
entries and the entity links) from their files.

The DoFns are thin adapters over `entitynet.harvest`, `entitynet.fetch`, `entitynet.images` and
`entitynet.shards`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.common import (
    PipelineOutput,
    SumCounters,
    WriteJsonl,
    attribution_files,
    complete_dataset,
    remove_unlisted,
    run_pipeline,
    shard_lengths,
    sum_shard_counts,
    write_shard_records,
)
from entitynet import datacard, harvest, records, shards
from entitynet.curation import balance
from entitynet.errors import EntityNetError, OutputError
from entitynet.fetch.fetcher import Fetcher, host_name
from entitynet.files import write_json, write_lines
from entitynet.kg import classify
from entitynet.links import Linker, LinkRule, link_stats
from entitynet.progress import Progress
from entitynet.records import Candidate, Entity, ImageRecord, Query, read_jsonl, write_jsonl
from entitynet.search.base import SearchCache, cached_search, dropped_modifiers
from entitynet.storage import STORE, is_remote
from entitynet.urls import public_url

log = logging.getLogger("entitynet.harvest")

LEGACY_CANDIDATES = "candidates.jsonl"  # one file, as runs before sharded candidates/ wrote it
STATS = shards.HARVEST_STATS
CONFIG = "harvest_config.json"
POOL_BALANCE = "pool_balance.tsv"  # per entry: matched pool rows before and after --balance-t


# Nothing proportional to the data goes into a job graph (Dataflow refuses graphs over ~20 MiB):
# the DoFns get the paths of queries.jsonl and entities.jsonl and read them on the worker, whole in
# `setup()` or a part at a time (`ReadQueries`). Files are read through the pipelines' store.


def _read(path: str, cls):
    return read_jsonl(path, cls)


class ReadQueries(beam.DoFn):
    """(queries.jsonl, part, parts) -> the part's queries in batches of `batch`."""

    def __init__(self, batch: int):
        self.batch = batch

    def process(self, part):
        path, i, n = part
        batch: list[Query] = []
        for q in harvest.read_part(path, i, n, Query, STORE):
            batch.append(q)
            if len(batch) == self.batch:
                yield batch
                batch = []
        if batch:
            yield batch


class Search(beam.DoFn):
    """A batch of queries -> (url, candidate) for every image the backend found."""

    def __init__(self, spec: harvest.SearchSpec, cache_dir: str, threads: int, settings: str):
        self.spec, self.cache_dir, self.threads = spec, cache_dir, threads
        self.settings = settings  # digest of `harvest.search_settings`: part of every cache key

    def setup(self):
        self.backends = self.spec.open_all((), STORE)  # the identifier backends read the entities file
        self.cache = SearchCache(self.cache_dir, STORE, self.settings)
        self.pool = ThreadPoolExecutor(self.threads)

    def teardown(self):
        self.pool.shutdown(wait=False)

    def process(self, batch: list[Query]):
        asks = [(b, q) for q in batch for b in self.backends]
        for found in self.pool.map(lambda bq: cached_search(bq[0], bq[1], self.cache), asks):
            for c in found:
                yield c.url, c


class ReadPool(beam.DoFn):
    """A unit of the pool (a Parquet row group, or a whole JSONL/CSV file) -> (url, candidate) for
    every row whose text names a query's entity; the matcher is built once per worker from the
    queries file."""

    def __init__(self, queries: str):
        self.queries = queries

    def setup(self):
        from entitynet.search.pool import PoolMatcher, pool_names

        self.matcher = PoolMatcher(pool_names(_read(self.queries, Query)))

    def process(self, unit):
        from entitynet.search.pool import read_batches

        for batch in read_batches(tuple(unit), STORE):
            for c in self.matcher.candidates(*batch):
                yield c.url, c


class ForEntities(beam.DoFn):
    """A source file -> `read(path, index)`: its rows for the entities' taxa, where `index` (taxon
    -> entities, `index(entities)`) is made from the entities file once per worker."""

    def __init__(self, entities: str, index, read):
        self.entities, self.index_of, self.read = entities, index, read

    def setup(self):
        self.index = self.index_of(_read(self.entities, Entity))

    def process(self, path: str):
        yield from self.read(path, self.index)


class GbifArchive(beam.PTransform):
    """A GBIF Darwin Core Archive -> (url, candidate) for every still image of an occurrence of an
    entity's taxon: occurrence.txt and multimedia.txt streamed on two workers and joined on gbifID
    (nothing holds the archive; a worker holds one occurrence's media at a time)."""

    def __init__(self, spec: harvest.SearchSpec):
        super().__init__("GbifArchive")
        self.path, self.entities = spec.gbif_archive, spec.entities_file

    def expand(self, p):
        from entitynet.search import gbif

        path = self.path
        occurrences = (
            p
            | "Occurrences" >> beam.Create([path])
            | "ReadOccurrences"
            >> beam.ParDo(ForEntities(self.entities, gbif.archive_keys, gbif.read_occurrences))
        )
        media = (
            p | "Multimedia" >> beam.Create([path]) | "ReadMultimedia" >> beam.FlatMap(gbif.read_multimedia)
        )
        return (
            {"occurrence": occurrences, "media": media}
            | "JoinOnGbifId" >> beam.CoGroupByKey()
            | "MediaCandidates"
            >> beam.FlatMap(
                lambda kv: ((c.url, c) for c in gbif.archive_candidates(kv[1]["occurrence"], kv[1]["media"]))
            )
        )


class INaturalistOpenData(beam.PTransform):
    """iNaturalist's open-data files -> (url, candidate) for every photo of a research-grade
    observation of an entity's taxon: observations and photos joined on the observation uuid, the
    photos then joined with their observers (for the credit); taxon names are a side input bounded
    by the entities."""

    def __init__(self, spec: harvest.SearchSpec):
        super().__init__("INaturalistOpenData")
        from entitynet.search.inaturalist import FILES, data_file

        self.files = {name: data_file(spec.inaturalist_data, name) for name in FILES[:3]}
        try:
            self.files["observers"] = data_file(spec.inaturalist_data, "observers")
        except EntityNetError:
            self.files["observers"] = ""  # credits then name no observer
        self.entities, self.size = spec.entities_file, spec.photo_size
        self.base = spec.endpoint("inaturalist-open-data")

    def expand(self, p):
        from entitynet.search import inaturalist as inat

        files, entities, size, base = self.files, self.entities, self.size, self.base

        def read(name, fn):
            return p | f"File-{name}" >> beam.Create([files[name]]) | f"Read-{name}" >> fn

        observations = read(
            "observations", beam.ParDo(ForEntities(entities, inat.taxon_entities, inat.read_observations))
        )
        photos = read("photos", beam.FlatMap(inat.read_photos))
        names = beam.pvalue.AsDict(
            read("taxa", beam.ParDo(ForEntities(entities, inat.taxon_entities, inat.read_taxa)))
        )

        def joined(kv):
            for entity, taxon in kv[1]["observation"]:
                for photo in kv[1]["photo"]:
                    yield photo["observer_id"], (entity, taxon, photo)

        pending = (
            {"observation": observations, "photo": photos}
            | "JoinOnObservation" >> beam.CoGroupByKey()
            | "PhotosOfTaxa" >> beam.FlatMap(joined)
        )
        observers = (
            read("observers", beam.FlatMap(inat.read_observers))
            if files["observers"]
            else p | beam.Create([])
        )

        def credited(kv, names):
            who = next(iter(kv[1]["observer"]), "")
            for entity, taxon, photo in kv[1]["photo"]:
                c = inat.photo_candidate(
                    entity, taxon, photo, names, size, who, base or inat.OPEN_DATA_PHOTOS
                )
                yield c.url, c

        return (
            {"photo": pending, "observer": observers}
            | "JoinOnObserver" >> beam.CoGroupByKey()
            | "PhotoCandidates" >> beam.FlatMap(credited, names)
        )


class BalanceBeforeFetch(beam.PTransform):
    """MetaCLIP's order for a pool: the merged candidates' entries counted over the whole pool (a
    global combine, bounded by the entries), then each candidate kept with `curate`'s balancing
    draw, so only the kept ones are fetched. Outputs "kept" candidates, "outcomes" of the others
    (balanced_out, no_entry), and the per-entry counts "before" and "after" as (entry, n)."""

    def __init__(self, entities: str, t: int, seed: int):
        """`entities`: the path of entities.jsonl."""
        super().__init__("BalanceBeforeFetch")
        self.entities, self.t, self.seed = entities, t, seed

    def expand(self, candidates):
        t, seed = self.t, self.seed
        with_entries = candidates | "PoolEntries" >> beam.ParDo(PoolEntries(self.entities))
        before = (
            with_entries
            | "EntriesBefore" >> beam.FlatMap(lambda ce: ce[1])
            | "CountBefore" >> beam.combiners.Count.PerElement()
        )

        def decide(ce, counts):
            outcome = harvest.balance_candidate(ce[0], ce[1], counts, t, seed)
            yield ce if outcome is None else beam.pvalue.TaggedOutput("outcomes", outcome)

        decided = with_entries | "Draw" >> beam.ParDo(decide, beam.pvalue.AsDict(before)).with_outputs(
            "outcomes", main="kept"
        )
        after = (
            decided.kept
            | "EntriesAfter" >> beam.FlatMap(lambda ce: ce[1])
            | "CountAfter" >> beam.combiners.Count.PerElement()
        )
        kept = decided.kept | "Candidate" >> beam.Map(lambda ce: ce[0])
        return {"kept": kept, "outcomes": decided.outcomes, "before": before, "after": after}


class PoolEntries(beam.DoFn):
    """candidate -> (candidate, its entries), as `curate` finds them (entitynet.curation.metadata);
    the entities read from their file once per worker."""

    def __init__(self, entities: str):
        self.entities = entities

    def setup(self):
        from entitynet.curation.metadata import EntityMetadata

        self.metadata = EntityMetadata(_read(self.entities, Entity))

    def process(self, c: Candidate):
        yield c, self.metadata.entries(c.alt_texts, c.entity_ids)


class _OpenUnit:
    """A unit being fetched: its path, the next part to write, the results not yet saved, and
    how many of its fetches are still running."""

    def __init__(self, path: str, parts: int, left: int):
        self.path, self.parts, self.left = path, parts, left
        self.unsaved: dict = {}


class FetchUnit(beam.DoFn):
    """(unit, candidates) -> (key, ImageRecord) for good images, Outcome on "outcomes" otherwise.

    A unit's fetches go to the worker's event loop as the unit arrives (up to `--in-flight`
    requests open at once over all units, the image work on `--threads` threads), and each result
    is emitted as soon as it is done; the results are saved in parts (`harvest.save_part`, every
    `save_every` results and when the unit is done) and a re-run reuses them. So the loop moves on
    to the next units while one waits for its slowest host: on a web with a long tail (stalls
    until the timeout) the requests in flight stay many instead of idling behind one stalled URL.
    New units are taken until the loop has all its places in flight taken and twice as many
    fetches queued (or `QUEUED_MAX` times as many queued behind their hosts' limits), so memory
    does not grow with the bundle or with a unit. `big_hosts` (side input): the hosts split into
    slots (`harvest.politeness`).
    """

    QUEUED_MAX = 32

    def __init__(self, opts: harvest.HarvestOptions, work_dir: str, one_process: bool = True):
        self.opts, self.work_dir, self.one_process = opts, work_dir, one_process

    def setup(self):
        self.store = STORE
        self.fetcher = Fetcher(self.opts.fetch)
        records.warm_codec()  # before the image threads: they run while this thread emits records
        self.cpu = ThreadPoolExecutor(self.opts.threads, thread_name_prefix="entitynet-image")

    def teardown(self):
        self.fetcher.close()
        self.cpu.shutdown(wait=False)

    def start_bundle(self):
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # (unit, candidate, future) as each ends
        self.running = 0  # fetches submitted and not yet emitted
        self.open_units: dict[int, _OpenUnit] = {}  # the units with fetches still running

    def process(self, kv, big_hosts, total=0):
        self.progress = progress_of(self.work_dir, total, self.one_process)
        unit, candidates = kv[0], list(kv[1])
        path = harvest.unit_path(self.work_dir, unit, self.opts.work_units, self.store)
        previous, parts = harvest.load_unit(path, self.store)
        todo = harvest.unit_todo(candidates, previous, self.opts.retry_failed)
        fresh = {c.url for c in todo}
        reused = 0
        for c in candidates:
            if c.url not in fresh:
                reused += 1
                yield from _emit(previous[c.url][1])
        yield beam.pvalue.TaggedOutput("reused", Counter({("reused",): reused}))
        self.progress.add(reused=reused)
        if todo:
            open_unit = _OpenUnit(path, parts, len(todo))
            self.open_units[id(open_unit)] = open_unit
            for c in sorted(todo, key=lambda c: c.url):
                slot, share = harvest.politeness(c.url, big_hosts)
                work = harvest.afetch_and_process(self.fetcher, c, self.opts.image, self.cpu, slot, share)
                future = self.fetcher.submit(work)
                future.add_done_callback(lambda f, u=open_unit, c=c: self.done.put((u, c, f)))
            self.running += len(todo)
        yield from self._collect(block=False)
        while self._full():
            yield from self._collect(block=True)

    def _full(self) -> bool:
        """Whether to wait before taking another unit: the fetches queued are plenty (twice
        --in-flight) and the loop has every place in flight taken; or queued behind their hosts'
        limits, they are many (`QUEUED_MAX` x --in-flight: another unit brings other hosts, which
        may have places free, but memory stays bounded)."""
        in_flight = self.opts.fetch.in_flight
        if self.running > self.QUEUED_MAX * in_flight:
            return True
        return self.running > 2 * in_flight and self.fetcher.active >= in_flight

    def finish_bundle(self):
        while self.running:
            for out in self._collect(block=True):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, _global(out.value))
                else:
                    yield _global(out)

    def _collect(self, block: bool):
        """Emit the finished fetches (waiting for one first when `block`) and save parts."""
        try:
            ended = [self.done.get()] if block and self.running else []
        except KeyboardInterrupt:  # Ctrl-C: what has been fetched is kept for the re-run
            self._save_finished()
            raise
        for u, c, future in self._finished(ended):
            result = future.result()
            u.unsaved[c.url] = (c, result)
            u.left -= 1
            self.running -= 1
            self.progress.add(done=1, made=isinstance(result, ImageRecord))
            yield from _emit(result)
            if len(u.unsaved) >= self.opts.save_every or (u.unsaved and not u.left):
                harvest.save_part(u.path, u.parts, u.unsaved, self.store)
                u.parts, u.unsaved = u.parts + 1, {}
            if not u.left:
                self.open_units.pop(id(u), None)

    def _finished(self, ended: list) -> list:
        """`ended` and every fetch that has ended since (without waiting)."""
        while True:
            try:
                ended.append(self.done.get_nowait())
            except queue.Empty:
                return ended

    def _save_finished(self) -> None:
        """Save every ended fetch not saved yet, in one more part of its unit (an interrupted run)."""
        for u, c, future in self._finished([]):
            u.unsaved[c.url] = (c, future.result())
        for u in self.open_units.values():
            if u.unsaved:
                harvest.save_part(u.path, u.parts, u.unsaved, self.store)
                u.parts, u.unsaved = u.parts + 1, {}


# One progress line per process and harvest, shared by its FetchUnit instances (`progress_of`).
_PROGRESS: dict[str, Progress] = {}
_PROGRESS_LOCK = threading.Lock()


def progress_of(work_dir: str, total: int, one_process: bool) -> Progress:
    """This process's progress of the harvest fetching into `work_dir`: of `total` candidates
    when the whole harvest runs here, else this worker's own count."""
    with _PROGRESS_LOCK:
        if work_dir not in _PROGRESS:
            what = "harvest" if one_process else "harvest (this worker)"
            _PROGRESS[work_dir] = Progress(
                what, total if one_process else 0, unit="candidates", stream=sys.stderr
            )
        return _PROGRESS[work_dir]


def end_progress(work_dir: str) -> None:
    """The harvest's last progress line, once its pipeline has run (the local runner's)."""
    with _PROGRESS_LOCK:
        p = _PROGRESS.pop(work_dir, None)
    if p is not None:
        p.close()


def _emit(result):
    if isinstance(result, ImageRecord):
        yield result.key, result
    else:
        yield beam.pvalue.TaggedOutput("outcomes", result)


class BigHosts(beam.PTransform):
    """Candidates -> (host, slots) for the hosts with more than `host_split` candidates: counts
    combined per host, only the big ones kept (a side input bounded by candidates / host_split)."""

    def __init__(self, opts: harvest.HarvestOptions):
        super().__init__()
        self.per_host, self.split = opts.fetch.per_host_concurrency, opts.host_split

    def expand(self, candidates):
        per_host, split = self.per_host, self.split
        return (
            candidates
            | "Host" >> beam.Map(lambda c: host_name(c.url))
            | "PerHost" >> beam.combiners.Count.PerElement()
            | "Big" >> beam.Filter(lambda kv: kv[1] > split)
            | "Slots" >> beam.MapTuple(lambda host, n: (host, harvest.slots_for(n, per_host, split)))
        )


def _global(value) -> WindowedValue:
    """`finish_bundle` output: in the global window, as everything in these batch pipelines."""
    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class MergeDuplicates(beam.DoFn):
    """Exact duplicates -> one record with its entity links (pruned; unlinked images dropped). The
    linker is made once per worker from the queries file and the entities file (the entities'
    names for the alt-text evidence; without one, the noun and alias queries' texts)."""

    def __init__(self, queries: str, entities: str, rule: LinkRule):
        self.queries, self.entities, self.rule = queries, entities, rule

    def setup(self):
        names = _read(self.entities, Entity) if self.entities else ()
        self.linker = Linker(_read(self.queries, Query), names, self.rule)

    def process(self, kv):
        record, outcomes = harvest.merge_duplicates(kv[1], self.linker)
        if record is not None:
            yield record
        for d in outcomes:
            yield beam.pvalue.TaggedOutput("outcomes", d)


class WriteShard(beam.DoFn):
    """((split, shard), records) -> one ArrayRecord file, written atomically; its stats and outcomes."""

    def __init__(self, out_dir: str, num_shards: int):
        self.out_dir, self.num_shards = out_dir, num_shards

    def process(self, kv):
        (split, shard), recs = kv
        recs, written = write_shard_records(self.out_dir, split, shard, self.num_shards, recs)
        for r in recs:
            for url in r.urls:
                if url == r.url:
                    yield beam.pvalue.TaggedOutput("outcomes", harvest.outcome(url, "written"))
        counts: Counter = Counter()
        for r in recs:
            counts.update(harvest.record_counts(r))
        counts.update({("links", k): v for k, v in link_stats(recs).items()})
        yield beam.pvalue.TaggedOutput("counts", counts)
        yield {**written, "entities": sum(1 for k in counts if k[0] == "entity")}


def _merge_url(kv):
    (merged,) = records.merge_candidates(kv[1])
    return merged


def pool_matches(p: beam.Pipeline, queries: str, spec: harvest.SearchSpec):
    """(url, candidate) for every row of the pool whose text names a query's entity: the pool's
    units (Parquet row groups, JSONL/CSV files) read and matched in parallel (`queries`: the path
    of queries.jsonl)."""
    from entitynet.search.pool import pool_files, pool_units

    return (
        p
        | "PoolUnits" >> beam.Create(pool_units(pool_files(spec.pool, STORE), STORE))
        | "ReadPool" >> beam.ParDo(ReadPool(queries))
    )


def build(
    p: beam.Pipeline,
    queries: str,
    spec: harvest.SearchSpec,
    opts: harvest.HarvestOptions,
    out_dir: str,
    cache_dir: str,
    work_dir: str,
    staged_stats: str,
    entities: str = "",
    search_digest: str = "",
    one_process: bool = True,
) -> None:
    """The harvest's graph. `queries`: the path of queries.jsonl; `entities`: the path of the
    entities.jsonl whose names are the alt-text evidence of entity links ("": the noun and alias
    queries' texts); `spec` names its entities by file (`entities_file`). The graph holds paths and
    options only: workers read the files."""
    if spec.entities:
        raise ValueError("a pipeline's SearchSpec names its entities by file (entities_file), not in memory")
    fractions = dict(opts.splits)
    found = []
    if spec.query_backends:
        found.append(
            p
            | "QueryFile" >> beam.Create([queries])
            | "QueryParts" >> beam.FlatMap(harvest.parts_of)  # (path, part, parts), made on a worker
            | "SpreadParts" >> beam.Reshuffle()
            | "Queries" >> beam.ParDo(ReadQueries(16))
            | "SpreadQueries" >> beam.Reshuffle()
            | "Search" >> beam.ParDo(Search(spec, cache_dir, 8, search_digest))
        )
    if "pool" in spec.backends:  # the pool is read in parallel, never held: no search, no cache
        found.append(pool_matches(p, queries, spec))
    if "gbif-archive" in spec.backends:
        found.append(p | GbifArchive(spec))
    if "inaturalist-open-data" in spec.backends:
        found.append(p | INaturalistOpenData(spec))
    candidates = (
        found
        | "AllSources" >> beam.Flatten()
        | "ByUrl" >> beam.GroupByKey()
        | "MergeUrl" >> beam.Map(_merge_url)
    )
    to_fetch, not_fetched = candidates, p | "NothingLeftOut" >> beam.Create([])
    before = after = p | "NoPoolBalance" >> beam.Create([])
    if spec.balance_t:
        balanced = candidates | BalanceBeforeFetch(spec.entities_file, spec.balance_t, spec.balance_seed)
        to_fetch, not_fetched = balanced["kept"], balanced["outcomes"]
        before, after = balanced["before"], balanced["after"]
    # decided before the download, never fetched: URLs with credentials, licences left out
    checked = to_fetch | "PreFetch" >> beam.ParDo(_prefetch, opts.license_filter).with_outputs(
        "outcomes", main="kept"
    )
    to_fetch = checked.kept
    not_fetched = (not_fetched, checked.outcomes) | "NotFetched" >> beam.Flatten()
    big_hosts = beam.pvalue.AsDict(to_fetch | BigHosts(opts))
    # the progress line's total; on a runner of many workers each reports its own count
    to_count = to_fetch if one_process else p | "NoTotal" >> beam.Create([])
    total = beam.pvalue.AsSingleton(to_count | "CountToFetch" >> beam.combiners.Count.Globally())
    fetched = (
        to_fetch
        | "ToUnit"
        >> beam.Map(lambda c, big: (harvest.unit_of(c.url, opts.work_units, big), c), big=big_hosts)
        | "ByUnit" >> beam.GroupByKey()
        | "FetchUnit"
        >> beam.ParDo(FetchUnit(opts, work_dir, one_process), big_hosts=big_hosts, total=total)
        .with_output_types(tuple[str, ImageRecord])
        .with_outputs("outcomes", "reused", main="records")
    )
    merged = (
        fetched.records
        | "ByContent" >> beam.GroupByKey()
        | "MergeDuplicates"
        >> beam.ParDo(MergeDuplicates(queries, entities, opts.links)).with_outputs("outcomes", main="records")
    )
    written = (
        merged.records
        | "ToShard"
        >> beam.Map(
            lambda r: ((shards.split_of(r.key, fractions), shards.shard_of(r.key, opts.num_shards)), r)
        )
        | "ByShard" >> beam.GroupByKey()
        | "WriteShard"
        >> beam.ParDo(WriteShard(out_dir, opts.num_shards)).with_outputs("outcomes", "counts", main="shards")
    )
    outcomes = (
        not_fetched,
        fetched.outcomes,
        merged.outcomes,
        written.outcomes,
    ) | "Outcomes" >> beam.Flatten()

    # Nothing below gathers candidates, outcomes or records: they go to sharded files, and only
    # counters (summed by Beam) and one small stats row per file reach the finish.
    n = opts.num_shards
    files = [
        candidates
        | WriteJsonl(
            out_dir,
            "candidates",
            n,
            lambda c: public_url(c.url),
            lambda c: records.to_json(harvest.public_candidate(c)),
        ),
        outcomes
        | WriteJsonl(
            out_dir, "outcomes", n, lambda o: o.url, lambda o: json.dumps(asdict(o), ensure_ascii=False)
        ),
    ]
    hosts = (
        outcomes
        | "ByHost" >> beam.Map(lambda o: (o.host, Counter({o.outcome: 1})))
        | "PerHost" >> beam.CombinePerKey(SumCounters())
        | "HostRow" >> beam.MapTuple(lambda host, c: {**harvest.host_row(host, c), "per_outcome": c})
    )
    files.append(
        hosts | WriteJsonl(out_dir, "hosts", n, lambda h: h["host"], lambda h: json.dumps(h, sort_keys=True))
    )
    top_hosts = hosts | "TopHosts" >> beam.combiners.Top.Of(
        harvest.TOP_HOSTS, key=lambda h: (h["urls"], h["host"])
    )
    counts = (
        (outcomes | "OutcomeCounts" >> beam.Map(harvest.outcome_counts), written.counts, fetched.reused)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(SumCounters())
    )
    names = files | "AllFiles" >> beam.Flatten()

    def finish(_, counts, top_hosts, shard_stats, names, before_, after_):
        stats = harvest.summary(
            counts, [{k: v for k, v in h.items() if k != "per_outcome"} for h in top_hosts]
        )
        if spec.balance_t:  # the per-entry counts are bounded by the entities, as in `curate`
            stats["pool_balance"] = pool_balance_stats(
                dict(before_), dict(after_), stats["per_outcome"], spec.balance_t, spec.balance_seed
            )
        stats["reused_from_earlier_run"] = counts.get(("reused",), 0)
        stats["shards"] = sorted(shard_stats, key=lambda s: (s["split"], s["shard"]))
        stats["files"] = {
            kind: sorted(x for x in names if x.startswith(kind + "/"))
            for kind in ("candidates", "outcomes", "hosts")
        }
        STORE.write(staged_stats, json.dumps(stats, indent=2, sort_keys=True).encode())
        yield stats["candidates"]

    (
        p
        | "Finally" >> beam.Create([None])
        | "Finish"
        >> beam.FlatMap(
            finish,
            beam.pvalue.AsSingleton(counts),
            beam.pvalue.AsSingleton(top_hosts),
            beam.pvalue.AsList(written.shards),  # one small row per shard file: bounded by the layout
            beam.pvalue.AsList(names),  # one name per side file: bounded by the layout
            beam.pvalue.AsList(before),  # per entry: bounded by the entities
            beam.pvalue.AsList(after),
        )
    )


def _prefetch(c: Candidate, allowed):
    outcome = harvest.prefetch_outcome(c, allowed)
    yield c if outcome is None else beam.pvalue.TaggedOutput("outcomes", outcome)


def pool_balance_stats(before: dict, after: dict, per_outcome: dict, t: int, seed: int) -> dict:
    """The pool's balancing before fetching: head and tail at t, the candidates kept and the fetches
    saved, and the per-entry counts (written to pool_balance.tsv by the driver)."""
    saved = sum(per_outcome.get(k, 0) for k in harvest.NOT_FETCHED)
    return {
        "t": t,
        "seed": seed,
        "before": balance.head_tail(before, t),
        "after": balance.head_tail(after, t),
        "balanced_out": per_outcome.get("balanced_out", 0),
        "no_entry": per_outcome.get("no_entry", 0),
        "fetches_saved": saved,
        "counts": {e: [n, after.get(e, 0)] for e, n in before.items()},
    }


def run(
    queries: str | Sequence[Query],
    spec: harvest.SearchSpec,
    opts: harvest.HarvestOptions,
    out_dir: str,
    beam_args: list[str] | None = None,
    labels: dict[str, str] | None = None,
    entities: str | Sequence[Entity] = (),
) -> dict:
    """Search, fetch, process and write shards + TFDS metadata + stats + a data card under `out_dir`
    (`labels`: entity id -> name for the card; `entities`: their names for the alt-text evidence of
    entity links, else the noun and alias queries' texts); return the stats.

    `queries` and `entities` are the paths of queries.jsonl and entities.jsonl (local or remote), as
    is the spec's `entities_file`: the workers read them, the job graph holds their paths. Tests and
    tools may give the records themselves (and a spec with `entities` in memory): they are written
    to staged files in `out_dir` first (removed at the end), so the graph stays the same size.

    `out_dir` may be remote (gs://…, any Beam filesystem): shards are written locally and copied,
    the search cache and work units live there too, and the small files the driver writes (TFDS
    metadata, stats, data card) are made in a local temp directory and uploaded at the end."""
    started = time.time()
    supported = spec.modifiers()
    n_queries, dropped = _query_summary(queries, supported)  # the driver's one pass over the queries
    if not n_queries:
        raise EntityNetError("no queries to search for; run `entitynet queries` first")
    with PipelineOutput(out_dir, "entitynet-harvest-", "harvest", earlier=(CONFIG,)) as out:
        store, local_dir = out.store, out.local_dir
        queries = queries if isinstance(queries, str) else _staged_jsonl(out, "queries.jsonl", queries)
        n_entities = len(spec.entities) if spec.entities else _count_lines(spec.entities_file)
        # what `kg classify` left out beside the entities file: for the data card
        left_out = (
            classify.left_out_summary(classify.iter_left_out(spec.entities_file))
            if spec.entities_file
            else None
        )
        if spec.entities:
            given = not isinstance(entities, str) and tuple(entities) == spec.entities
            spec = replace(
                spec, entities=(), entities_file=_staged_jsonl(out, "entities.jsonl", spec.entities)
            )
            if given:
                entities = spec.entities_file
        if not isinstance(entities, str):
            entities = _staged_jsonl(out, "names.jsonl", entities) if entities else ""
        cache_dir = store.join(out_dir, "search_cache")
        work_root = store.join(out_dir, "fetch_work")
        work_dir = harvest.unit_dir(work_root, opts, store)
        settings = {
            "search": harvest.search_settings(spec, STORE),
            "fetch": harvest.fetch_settings(opts),
        }
        changed = _changed_options(store, out_dir, settings)
        if changed:
            log.warning(
                "options differ from the earlier harvest in %s (%s): what they decide is made again, "
                "nothing made under the old ones is reused",
                out_dir,
                ", ".join(changed),
            )
        staged_stats = out.staged(STATS)
        log.info("harvesting %d queries with %s into %s", n_queries, spec.backend, out_dir)
        one_process = not any(f == "--runner" or f.startswith("--runner=") for f in beam_args or [])
        try:
            run_pipeline(
                lambda p: build(
                    p,
                    queries,
                    spec,
                    opts,
                    out_dir,
                    cache_dir,
                    work_dir,
                    staged_stats,
                    entities or spec.entities_file,
                    harvest.settings_digest(settings["search"]),
                    one_process,
                ),
                beam_args,
            )
        finally:
            end_progress(work_dir)
        stats = json.loads(store.read(staged_stats) or b"null")
        if not isinstance(stats, dict):
            raise OutputError(f"the pipeline's stats file {staged_stats} is missing; re-run the harvest")
        stats["options_changed"] = changed
        lengths, sizes = shard_lengths(stats["shards"], [s for s, _ in opts.splits], opts.num_shards)
        complete_dataset(out_dir, local_dir, lengths, sizes, opts.num_shards, stats["shards"])
        shard_dir = os.path.join(local_dir, "shard_stats")
        os.makedirs(shard_dir, exist_ok=True)
        layout = shards.layout_of(lengths)
        for s in stats["shards"]:
            write_json(os.path.join(shard_dir, s["file"] + ".json"), s)
        stats["per_split"] = {s: sum(c) for s, c in lengths.items()}
        # records per licence and source, counted by the shard writers (an image of two sources counts in both)
        stats["per_license"] = sum_shard_counts(stats["shards"], "per_license")
        stats["per_source"] = sum_shard_counts(stats["shards"], "per_source")
        if "pool_balance" in stats:
            counts = stats["pool_balance"].pop("counts")
            write_lines(
                os.path.join(local_dir, POOL_BALANCE),
                ["entity\tlabel\tbefore\tafter"]
                + [
                    f"{e}\t{(labels or {}).get(e, '')}\t{b}\t{a}"
                    for e, (b, a) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
                ],
            )
        stats["modifiers"] = {"sent": sorted(supported), "dropped": dropped}
        if left_out:
            stats["left_out"] = left_out
        datacard.write_card(local_dir, stats, labels)
        write_json(
            os.path.join(local_dir, CONFIG),
            {
                "search": {
                    **{k: v for k, v in asdict(spec).items() if k != "entities_file"},
                    "entities": n_entities,
                },
                "harvest": asdict(opts),
                "settings": {**settings, "fetch_digest": work_dir.rstrip("/").rsplit("/", 1)[-1]},
                "queries": n_queries,
                "beam_args": list(beam_args or []),
            },
        )
        stats["seconds"] = round(time.time() - started, 2)
        write_json(os.path.join(local_dir, STATS), stats)
        stale = out.finish(
            keep=[n for names in layout.values() for n in names],
            obsolete=(LEGACY_CANDIDATES,) + (() if spec.balance_t else (POOL_BALANCE,)),
        )
        remove_unlisted(
            out_dir, "shard_stats", [f"shard_stats/{n}.json" for names in layout.values() for n in names]
        )
        stale += remove_unlisted(out_dir, shards.ATTRIBUTION_DIR, attribution_files(layout))
        for kind, names in stats["files"].items():
            stale += remove_unlisted(out_dir, kind, names)
        stats["stale_removed"] = stale + _remove_other_units(work_root, work_dir)
    return stats


def _query_summary(queries: str | Sequence[Query], supported: frozenset[str]) -> tuple[int, dict[str, int]]:
    """How many queries there are and the modifiers they carry that no backend sends
    (`dropped_modifiers`): the queries streamed from their file (a malformed line is an error here,
    before anything runs), never held."""
    if not isinstance(queries, str):
        return len(queries), dropped_modifiers(queries, supported)
    n = 0

    def counted():
        nonlocal n
        for q in read_jsonl(queries, Query):
            n += 1
            yield q

    dropped = dropped_modifiers(counted(), supported)
    return n, dropped


def _count_lines(path: str) -> int:
    """The records of a JSONL file (its non-blank lines), counted without parsing them."""
    if not path:
        return 0
    with STORE.open(path) as f:
        return sum(1 for line in f if line.strip())


def _staged_jsonl(out: PipelineOutput, name: str, items) -> str:
    """Records given in memory, written to a staged file in the output (removed when the run ends)
    for the workers to read: a path instead of the records in the job graph."""
    path = out.staged(name)
    write_jsonl(path, items)
    return path


def _changed_options(store, out_dir: str, new: dict) -> list[str]:
    """The settings (dotted names) that differ from the earlier harvest in `out_dir`, if any."""
    data = store.read(store.join(out_dir, CONFIG))
    try:
        old = json.loads(data)["settings"] if data else None
    except (ValueError, KeyError, TypeError):
        old = None
    if not isinstance(old, dict):
        return []
    return harvest.changed_settings({k: old.get(k) for k in new}, json.loads(json.dumps(new, default=str)))


def _remove_other_units(work_root: str, work_dir: str) -> list[str]:
    """fetch_work/ keeps the units made under this run's fetch settings: units made under other
    settings can never be reused (and old-layout unit files at its top are dropped)."""
    current = work_dir.rstrip("/").rsplit("/", 1)[-1]
    if is_remote(work_root):
        doomed = [
            n
            for n in STORE.list_names(work_root, recursive=True)
            if not n.startswith(current + "/") or shards.is_temp_name(n)
        ]
        for name in doomed:
            with contextlib.suppress(FileNotFoundError):
                STORE.delete(STORE.join(work_root, name))
        return sorted({"fetch_work/" + n.split("/", 1)[0] for n in doomed})
    if not os.path.isdir(work_root):
        return []
    removed = []
    if os.path.isdir(os.path.join(work_root, current)):  # writes of units a killed run left half-done
        for name in os.listdir(os.path.join(work_root, current)):
            if shards.is_temp_name(name):
                os.remove(os.path.join(work_root, current, name))
    for name in sorted(os.listdir(work_root)):
        if name == current:
            continue
        path = os.path.join(work_root, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(f"fetch_work/{name}")
    return removed
