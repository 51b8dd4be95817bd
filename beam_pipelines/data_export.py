"""Data export: a harvest or a curation (a subset applied) to WebDataset or Parquet (Apache Beam).

    entitynet data export --data out/curated --format webdataset --text alt --out out/wds

Graph:

    the split's shard files ─► Reshuffle ─► Select (records of the subset, keyed by output shard =
      crc32(key) mod N; shards a killed run finished are left out) ─► GroupByKey(output shard)
      ─► WriteExportShard (sorted by key; the text chosen per record with a generator seeded by
         (seed, key); tar + Parquet sidecar + _stats.json, or one Parquet file + its stats, each
         written whole, the stats last) ─► per-shard stats
    finish (the per-shard stats: one small dict a shard) ─► the driver: empty shards for numbers
      no record fell into, sizes.json / the dataset card, export_stats.json

N follows from the records' stored size and the target shard size (`interchange.export.plan_shards`),
known before the run from the dataset's metadata, so every name is fixed in advance and a re-run
with the same options resumes: a shard with its stats file is whole and is not written again. A
re-run with other options into the same directory is refused. A worker holds one output shard's
records at a time (about the target size). The job graph holds paths and options only.

The DoFns are thin adapters over `entitynet.interchange`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass

import apache_beam as beam

from beam_pipelines.common import PipelineOutput, run_pipeline
from entitynet import records, shards
from entitynet.errors import ConfigError, EntityNetError, OutputError
from entitynet.interchange import parquet as pq_format
from entitynet.interchange import webdataset as wds
from entitynet.interchange.export import ExportOptions, SampleMaker, plan_shards
from entitynet.records import Entity, read_jsonl
from entitynet.storage import STORE

log = logging.getLogger("entitynet.pipelines")

CONFIG = "export_config.json"
STATS = "export_stats.json"


@dataclass(frozen=True)
class Source:
    """What an export reads: the shard directory, the subset applied to it (None: every record) and
    the entities.jsonl the data was curated with ("" when it does not say)."""

    shards: str
    subset: str | None
    entities: str


def resolve(data: str) -> Source:
    """The source of `--data DIR`: a harvest, a curation with shards, or a curation written as a
    subset of its harvest (`curate --output subset`: the harvest its stats name, and subset.npz)."""
    d = data.rstrip("/")
    config = _json(STORE.join(d, "curation_config.json"))
    entities = str(config.get("entities_file") or "")
    subset = STORE.join(d, "subset.npz")
    if STORE.exists(STORE.join(d, "dataset_info.json")):
        return Source(d, None, entities)
    if STORE.exists(subset):
        recorded = str(_json(STORE.join(d, shards.CURATION_STATS)).get("input") or config.get("shards") or "")
        harvest = shards.harvest_of(d, recorded)
        if harvest is None:
            raise EntityNetError(
                f"--data {data} is a subset of the harvest {recorded or '(not recorded)'}, which is not "
                "there; give --data the curation's shards instead, or put the harvest back"
            )
        return Source(harvest, subset, entities)
    raise EntityNetError(
        f"--data {data} is not a dataset (no dataset_info.json or subset.npz); give the --out of "
        "`entitynet curate` or `entitynet harvest`"
    )


def _json(path: str) -> dict:
    try:
        d = json.loads(STORE.read(path) or b"{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


class Select(beam.DoFn):
    """(split, shard path) -> (output shard, encoded record) for the records of the subset whose output
    shard is still to be written."""

    def __init__(self, subset: str | None, split: str, num_shards: int, done: frozenset[int]):
        self.subset_path, self.split, self.num_shards, self.done = subset, split, num_shards, done

    def setup(self):
        self.subset = records.read_subset(self.subset_path, self.split) if self.subset_path else None

    def process(self, item):
        _, path = item
        # the records travel encoded (bytes pickle cheaply through the shuffle); the writer decodes
        for key, data in shards.read_shard(path, decode=_keyed, chunk=64):
            if self.subset is not None and key not in self.subset:
                continue
            i = shards.shard_of(key, self.num_shards)
            if i not in self.done:
                yield i, data


def _keyed(data: bytes) -> tuple[str, bytes]:
    return records.record_key(data), data


class WriteExportShard(beam.DoFn):
    """(output shard, encoded records) -> its files, written whole (stats last); yields its stats."""

    def __init__(self, out_dir: str, opts: ExportOptions, entities: str, num_shards: int):
        self.out_dir, self.opts, self.entities, self.num_shards = out_dir, opts, entities, num_shards

    def setup(self):
        entities = list(read_jsonl(self.entities, Entity)) if self.entities else []
        self.maker = SampleMaker(entities, self.opts)

    def process(self, kv):
        index, encoded = kv
        recs = (records.decode_image(data) for data in encoded)
        yield write_export_shard(self.out_dir, index, self.num_shards, recs, self.maker, self.opts)


def write_export_shard(
    out_dir: str, index: int, num_shards: int, recs, maker: SampleMaker, opts: ExportOptions
) -> dict:
    """One output shard of `recs` (any order), in the export's format; returns its stats."""
    recs = sorted(recs, key=lambda r: r.key)
    samples, no_text = [], 0
    for r in recs:
        s = maker.sample(r)
        if s is None:
            no_text += 1
        else:
            samples.append((r.jpeg, s))
    if opts.format == "webdataset":
        stats = wds.write_shard(out_dir, index, samples, split=opts.split)
        stats["no_text"] = no_text
        return {"index": index, **stats}
    name = pq_format.file_name(opts.split, index, num_shards)
    size = pq_format.write_shard(STORE.join(out_dir, name), samples)
    sources = Counter(s["text_source"] for _, s in samples)
    stats = {"index": index, "count": len(samples), "bytes": size, "no_text": no_text}
    stats.update(text_sources=dict(sorted(sources.items())), file=name)
    STORE.write(
        STORE.join(out_dir, pq_format.stats_name(opts.split, index, num_shards)),
        (json.dumps(stats, sort_keys=True) + "\n").encode(),
    )
    return stats


def finished_stats(out_dir: str, opts: ExportOptions, num_shards: int) -> dict[int, dict]:
    """The stats of the shards an earlier run of the same export wrote whole."""
    if opts.format == "webdataset":
        names = set(STORE.list_names(out_dir))
        return {
            i: s
            for i in range(num_shards)
            if wds.shard_files(i)[2] in names and (s := wds.read_stats(out_dir, i)) is not None
        }
    found = {}
    names = set(STORE.list_names(STORE.join(out_dir, pq_format.STATS_DIR)))
    for i in range(num_shards):
        stats_file = pq_format.stats_name(opts.split, i, num_shards)
        if stats_file.split("/", 1)[1] in names:
            s = _json(STORE.join(out_dir, stats_file))
            if isinstance(s.get("count"), int):
                found[i] = s
    return found


def _leftovers(out_dir: str) -> list[str]:
    """Temp files of killed writers anywhere in the export (its layout cannot change: other options
    are refused)."""
    return [n for n in STORE.list_names(out_dir, recursive=True) if shards.is_temp_name(n.rsplit("/", 1)[-1])]


def run(data: str, out_dir: str, opts: ExportOptions, entities: str = "", beam_args=None) -> dict:
    """Export the `opts.split` split of the dataset `data` into `out_dir`; returns the stats."""
    started = time.time()
    source = resolve(data)
    entities = entities or source.entities
    if opts.text != "alt" and not entities:
        raise ConfigError(
            f"--text {opts.text} draws knowledge-graph captions: give --entities (the entities.jsonl the "
            f"data was made from; {data} does not name one)"
        )
    if entities and not STORE.exists(entities):
        raise ConfigError(
            f"--entities {entities} does not exist; give the entities.jsonl the data was made from"
        )
    if out_dir.rstrip("/") in (data.rstrip("/"), source.shards.rstrip("/")):
        raise OutputError(f"--out {out_dir} is the input; export into another directory")
    info = shards.check_directory(source.shards)
    split_info = {s["name"]: s for s in info.get("splits", [])}
    if opts.split not in split_info:
        raise ConfigError(
            f"{source.shards} has no split {opts.split!r}; its splits are {', '.join(sorted(split_info)) or 'none'}"
        )
    total = sum(int(n) for n in split_info[opts.split].get("shardLengths", []))
    num_bytes = int(split_info[opts.split].get("numBytes", 0) or 0)
    selected = len(records.read_subset(source.subset, opts.split)) if source.subset else total
    if not selected:
        raise EntityNetError(f"the {opts.split!r} split of {data} holds no records; nothing to export")
    estimate = num_bytes * selected // max(total, 1)
    num_shards = plan_shards(selected, estimate, opts)
    inputs = [(opts.split, str(p)) for p in shards.shard_paths(source.shards, opts.split)]
    config = {
        "export": asdict(opts),
        "data": data,
        "shards": source.shards,
        "subset": source.subset or "",
        "entities": entities,
        "num_shards": num_shards,
        "input_fingerprint": shards.fingerprint(source.shards),
    }
    with PipelineOutput(out_dir, "entitynet-data-export-", "data-export", earlier=(CONFIG,)) as out:
        previous = _json(STORE.join(out_dir, CONFIG))
        if previous and previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise OutputError(
                f"--out {out_dir} holds an export made with other options or from other data (changed: "
                f"{', '.join(changed)}); give another --out, or remove it to export again"
            )
        STORE.write(
            STORE.join(out_dir, CONFIG), (json.dumps(config, indent=1, sort_keys=True) + "\n").encode()
        )
        done = finished_stats(out_dir, opts, num_shards)
        staged = out.staged("export_result.json")
        if len(done) < num_shards:
            log.info(
                "exporting %s records of %s (%s) into %d %s shards (%d already written)",
                f"{selected:,}",
                data,
                opts.split,
                num_shards,
                opts.format,
                len(done),
            )
            run_pipeline(
                lambda p: build(
                    p, inputs, source.subset, opts, entities, out_dir, num_shards, frozenset(done), staged
                ),
                beam_args,
            )
            written = json.loads(STORE.read(staged) or b"[]")
        else:
            written = []
        per_shard = {**done, **{s["index"]: s for s in written}}
        maker = None
        for i in range(num_shards):  # numbers no record fell into: empty shards, so the names run on
            if i not in per_shard:
                maker = maker or SampleMaker([], opts)
                per_shard[i] = write_export_shard(out_dir, i, num_shards, [], maker, opts)
        counts = {i: int(per_shard[i]["count"]) for i in range(num_shards)}
        sources: Counter = Counter()
        for s in per_shard.values():
            sources.update(s.get("text_sources") or {})
        stats = {
            "format": opts.format,
            "data": data,
            "split": opts.split,
            "records": sum(counts.values()),
            "no_text": sum(int(s.get("no_text", 0)) for s in per_shard.values()),
            "shards": num_shards,
            "resumed_shards": len(done),
            "bytes": sum(int(s.get("bytes", 0)) for s in per_shard.values()),
            "text": opts.text,
            "text_sources": dict(sorted(sources.items())),
            "files": _file_list(opts, num_shards),
        }
        if opts.format == "webdataset":
            wds.write_sizes(out_dir, counts)
            stats["train_data"] = wds.brace_pattern(out_dir, num_shards)
        else:
            about = _card_prose(stats, source, opts)
            STORE.write(
                STORE.join(out_dir, pq_format.CARD),
                pq_format.card(opts.split, about).encode(),
            )
        stats["seconds"] = round(time.time() - started, 2)
        for name in _leftovers(out_dir):
            STORE.delete(STORE.join(out_dir, name))
        STORE.write(STORE.join(out_dir, STATS), (json.dumps(stats, indent=1) + "\n").encode())
        out.finish()
    return stats


def _file_list(opts: ExportOptions, num_shards: int) -> list[str]:
    if opts.format == "webdataset":
        return [n for i in range(num_shards) for n in wds.shard_files(i)]
    return [pq_format.file_name(opts.split, i, num_shards) for i in range(num_shards)]


def _card_prose(stats: dict, source: Source, opts: ExportOptions) -> str:
    texts = ", ".join(f"{k} {v:,}" for k, v in stats["text_sources"].items()) or "none"
    return (
        "# EntityNet export\n\n"
        f"{stats['records']:,} image-text pairs of the `{opts.split}` split of an EntityNet dataset "
        f"({source.shards}{', subset ' + source.subset if source.subset else ''}), one row per unique image, "
        f"in {stats['shards']} Parquet files.\n\n"
        f"- `image`: the stored JPEG (`{{bytes, path}}`; `datasets` decodes it as an Image)\n"
        f"- `caption`: the text chosen for the row ({opts.text}; per source: {texts}); `alt_texts` has every "
        "alt text seen for the image, `kg_captions` the knowledge-graph captions of its entities\n"
        "- `entity_ids` / `entity_names`: the knowledge-graph entities the image is linked to\n"
        "- `license`, `license_url`, `attribution`, `sources`, `url`, `page_url`: whom to credit and how; "
        "an image is only as free as its licence says\n"
        "- `entitynet`: the rest of the record (query ids, link evidence, provenance) as JSON, so that "
        "`entitynet data import` restores it exactly\n\n"
        "```python\nimport datasets\n"
        f'ds = datasets.load_dataset("parquet", data_dir="{pq_format.DATA_DIR}", split="{opts.split}")\n```\n'
    )


def build(p, inputs, subset, opts, entities, out_dir, num_shards, done, staged) -> None:
    def finish(_, stats):
        STORE.write(staged, json.dumps(sorted(stats, key=lambda s: s["index"])).encode())

    written = (
        p
        | "Shards" >> beam.Create(inputs)
        | "Spread" >> beam.Reshuffle()
        | "Select" >> beam.ParDo(Select(subset, opts.split, num_shards, done))
        | "ByShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(WriteExportShard(out_dir, opts, entities, num_shards))
    )
    (p | "Finally" >> beam.Create([None]) | "Finish" >> beam.Map(finish, beam.pvalue.AsList(written)))
