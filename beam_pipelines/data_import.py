"""Data import: WebDataset tars and Parquet files with image bytes (img2dataset, DataComp, LAION, the
Hub, our own exports) to harvest shards, with no download (Apache Beam).

    entitynet data import --input 'laion/{00000..00099}.tar' --queries out/queries/queries.jsonl \\
        --entities out/kg/entities.jsonl --source laion --out out/imported

Graph:

    units (a tar, a Parquet row group) ─► Reshuffle ─► ReadSamples (stream the unit: a sample of
      ours restored exactly; anyone else's matched to the entities' names by its texts, its bytes
      decoded, validated, resized and hashed as a fetched image's) ─► (content key, record)
         └─► outcomes (unmatched, no_image, skipped, an image rejection, unreadable_file)
      ─► GroupByKey(content key) ─► merge exact duplicates, entity links decided (restored ones
         keep theirs) ─► GroupByKey((split, shard)) ─► WriteShard (the harvest's writer)
    outcomes ─► outcomes/outcomes-*.jsonl (sharded by URL); counts ─► CombineGlobally(sum)
    finish (the summed counts, one row per shard) ─► import_stats.json; TFDS metadata

The output is a harvest's layout (ArrayRecord shards, TFDS metadata, attribution/), so `entitynet
curate` deduplicates, decontaminates and balances it as it does a harvest. A unit that cannot be
read (a truncated tar, a garbled Parquet file) is counted and named, its samples before the damage
kept; the import goes on. The job graph holds paths and options only.
"""

from __future__ import annotations

import json
import logging
import tarfile
import time
import zlib
from collections import Counter
from dataclasses import asdict
from pathlib import PurePosixPath

import apache_beam as beam

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
)
from beam_pipelines.harvest import WriteShard
from entitynet import harvest, records, shards
from entitynet.errors import ConfigError, EntityNetError, OutputError
from entitynet.interchange import parquet as pq_format
from entitynet.interchange import webdataset as wds
from entitynet.interchange.foreign import SUFFIXES, Importer, ImportOptions
from entitynet.links import Linker
from entitynet.records import Entity, ImageRecord, Outcome, Query, read_jsonl
from entitynet.search.pool import pool_names
from entitynet.storage import STORE

log = logging.getLogger("entitynet.pipelines")

CONFIG = "import_config.json"
STATS = "import_stats.json"


def input_files(patterns: list[str]) -> list[str]:
    """The files the inputs name (paths, globs, `{00000..00009}` ranges), sorted; a ConfigError for
    a pattern that matches nothing or a file that is neither a tar nor a Parquet file."""
    import braceexpand  # what open_clip and webdataset take for a list of shards

    files: list[str] = []
    for pattern in patterns:
        for expanded in braceexpand.braceexpand(pattern):
            found = STORE.match(expanded)
            if not found:
                raise ConfigError(f"--input {expanded} matches no file; check the path or the pattern")
            files += found
    for f in files:
        if PurePosixPath(f).suffix.lower() not in SUFFIXES:
            raise ConfigError(
                f"--input {f}: not a WebDataset tar or a Parquet file; give .tar or .parquet files "
                "(a directory: its shards, e.g. DIR/*.tar)"
            )
    return sorted(set(files))


def units_of(files: list[str]) -> list[tuple[str, int]]:
    """(file, row group) of each Parquet file (from its footer), (file, -1) for a tar."""
    units = []
    for f in files:
        if f.lower().endswith(".parquet"):
            try:
                groups = pq_format.row_groups(f)
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"--input {f} is not a readable Parquet file ({str(e).splitlines()[0]})"
                ) from None
            units += [(f, g) for g in range(groups)]
        else:
            units.append((f, -1))
    return units


class ReadSamples(beam.DoFn):
    """A unit -> (content key, (restored, record)); outcomes and counts tagged."""

    def __init__(self, queries: str, opts: ImportOptions):
        self.queries, self.opts = queries, opts

    def setup(self):
        names = pool_names(read_jsonl(self.queries, Query))
        self.importer = Importer(names, self.opts.image, self.opts.source)

    def process(self, unit):
        path, group = unit
        samples = wds.iter_tar(path) if group < 0 else pq_format.iter_parquet(path, group)
        counts: Counter = Counter()
        try:
            for sample in samples:
                counts[("samples",)] += 1
                restored, result = self.importer.record(sample, path, self.opts.relink)
                if isinstance(result, Outcome):
                    yield beam.pvalue.TaggedOutput("outcomes", result)
                else:
                    counts[("restored" if restored else "matched",)] += 1
                    yield result.key, (restored, result)
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
            where = path if group < 0 else f"{path} (row group {group})"
            log.warning("%s cannot be read to its end (%s); its samples before that are kept", where, e)
            yield beam.pvalue.TaggedOutput("outcomes", harvest.outcome(path, "unreadable_file", str(e)))
        yield beam.pvalue.TaggedOutput("counts", counts)


class MergeImported(beam.DoFn):
    """Records with one content key -> one record: restored records keep their links; matched
    ones get theirs decided (`entitynet.links`), as a harvest's do."""

    def __init__(self, queries: str, entities: str, opts: ImportOptions):
        self.queries, self.entities, self.opts = queries, entities, opts

    def setup(self):
        names = list(read_jsonl(self.entities, Entity)) if self.entities else ()
        self.linker = Linker(read_jsonl(self.queries, Query), names, self.opts.links)

    def process(self, kv):
        group = list(kv[1])
        restored = [r for ok, r in group if ok]
        if restored and len(restored) == len(group):
            # one copy: as it was exported, untouched; several (the same export imported twice): merged
            record: ImageRecord | None = (
                restored[0] if len(restored) == 1 else records.merge_images(restored[0], restored[1:])
            )
            outcomes = [
                harvest.outcome(r.url, "duplicate", f"same image as {restored[0].url}") for r in restored[1:]
            ]
        else:
            record, outcomes = harvest.merge_duplicates((r for _, r in group), self.linker)
        if record is not None:
            yield record
        for o in outcomes:
            yield beam.pvalue.TaggedOutput("outcomes", o)


def build(p, units, queries, entities, opts: ImportOptions, out_dir: str, staged: str) -> None:
    fractions = dict(opts.splits)
    read = (
        p
        | "Units" >> beam.Create(units)
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadSamples(queries, opts)).with_outputs("outcomes", "counts", main="records")
    )
    merged = (
        read.records
        | "ByContent" >> beam.GroupByKey()
        | "Merge"
        >> beam.ParDo(MergeImported(queries, entities, opts)).with_outputs("outcomes", main="records")
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
    outcomes = (read.outcomes, merged.outcomes, written.outcomes) | "AllOutcomes" >> beam.Flatten()
    outcome_files = outcomes | WriteJsonl(
        out_dir,
        "outcomes",
        opts.num_shards,
        key=lambda o: o.url,
        line=lambda o: json.dumps(asdict(o), ensure_ascii=False),
    )
    counts = (
        (outcomes | "OutcomeCounts" >> beam.Map(harvest.outcome_counts), read.counts, written.counts)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(SumCounters())
    )

    def finish(_, counts, shard_stats, names):
        result = {
            "counts": [[list(k), v] for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))],
            "shards": sorted(shard_stats, key=lambda s: (s["split"], s["shard"])),
            "files": sorted(names),
        }
        STORE.write(staged, json.dumps(result).encode())

    (
        p
        | "Finally" >> beam.Create([None])
        | "Finish"
        >> beam.Map(
            finish,
            beam.pvalue.AsSingleton(counts),
            beam.pvalue.AsList(written.shards),  # one small row per shard file
            beam.pvalue.AsList(outcome_files),  # one name per side file
        )
    )


def run(
    inputs: list[str],
    queries: str,
    entities: str,
    opts: ImportOptions,
    out_dir: str,
    beam_args: list[str] | None = None,
) -> dict:
    """Import the tars and Parquet files `inputs` (paths, globs, brace ranges) into a harvest's layout
    in `out_dir`, matched to the name queries of `queries` (linked with the names of `entities`);
    returns the stats."""
    started = time.time()
    files = input_files(inputs)
    units = units_of(files)
    for path in (queries, entities):
        if path and not STORE.exists(path):
            raise ConfigError(f"{path} does not exist; give the file `entitynet queries` / `kg expand` wrote")
    if not any(True for q in read_jsonl(queries, Query) if q.kind in ("noun", "alias")):
        raise EntityNetError(
            f"{queries} holds no name queries to match the samples' texts with; run `entitynet queries`"
        )
    if any(out_dir.rstrip("/") == f.rsplit("/", 1)[0] for f in files):
        raise OutputError(f"--out {out_dir} holds the input; import into another directory")
    with PipelineOutput(out_dir, "entitynet-data-import-", "data-import", earlier=(CONFIG,)) as out:
        staged = out.staged("import_result.json")
        log.info("importing %d files (%d units) into %s", len(files), len(units), out_dir)
        run_pipeline(lambda p: build(p, units, queries, entities, opts, out_dir, staged), beam_args)
        result = json.loads(STORE.read(staged) or b"null")
        if not isinstance(result, dict):
            raise OutputError(f"the pipeline's result {staged} is missing; re-run the import")
        counts = {tuple(k): v for k, v in result["counts"]}
        per_outcome = {k[1]: v for k, v in counts.items() if k[0] == "outcome"}
        written = sum(s["records"] for s in result["shards"])
        stats = {
            "inputs": files,
            "samples": counts.get(("samples",), 0),
            "restored": counts.get(("restored",), 0),
            "matched": counts.get(("matched",), 0),
            "records": written,
            "per_outcome": dict(sorted(per_outcome.items(), key=lambda kv: -kv[1])),
            "unreadable_files": per_outcome.get("unreadable_file", 0),
            "entities": sum(1 for k in counts if k[0] == "entity"),
            "per_license": sum_shard_counts(result["shards"], "per_license"),
            "per_source": sum_shard_counts(result["shards"], "per_source"),
            "shards": result["shards"],
            "files": {"outcomes": result["files"]},
        }
        if not written:
            why = ", ".join(f"{k} {n:,}" for k, n in stats["per_outcome"].items()) or "no samples"
            raise OutputError(
                f"the import of {len(files)} files kept no record ({why}); nothing was written to {out_dir} "
                f"but its outcomes/: a sample is kept when its texts name an entity of {queries}"
            )
        splits = [name for name, _ in opts.splits]
        lengths, sizes = shard_lengths(result["shards"], splits, opts.num_shards)
        complete_dataset(out_dir, out.local_dir, lengths, sizes, opts.num_shards, result["shards"])
        stats["seconds"] = round(time.time() - started, 2)
        config = {"import": asdict(opts), "inputs": inputs, "queries": queries, "entities": entities}
        STORE.write(STORE.join(out.local_dir, CONFIG), (json.dumps(config, indent=1) + "\n").encode())
        STORE.write(STORE.join(out.local_dir, STATS), (json.dumps(stats, indent=1) + "\n").encode())
        layout = shards.layout_of(lengths)
        out.finish(keep=[n for names in layout.values() for n in names])
        remove_unlisted(out_dir, shards.ATTRIBUTION_DIR, attribution_files(layout))
        remove_unlisted(out_dir, "outcomes", result["files"])
    return stats
