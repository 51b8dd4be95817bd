"""Curate: from harvest shards to a balanced, deduplicated, decontaminated dataset (Apache Beam).

    entitynet curate --shards out/shards --entities out/kg/entities.jsonl --t 20000 \\
        --decontaminate eval/imagefolder --out out/curated

Graph: a chain of stages (`StageOut`: the records a stage keeps go to the next; its removals
and side counts are gathered whatever the stage):

    shards ─► ReadShard (split, record)
      ─► Deduplicate: (key, phash, pixels) ─► Contaminated: join with the evaluation sets' hashes
      │    on band buckets ─► (key, set); clean ones ─► NearDupGroups: band buckets ─► pairs within
      │    k ─► connected components ─► (key, representative)            (beam_pipelines/neardup.py)
      │    ─► CoGroupByKey(key) with both: drop contaminated, key by representative ─► merge groups
      ─► RunFilters (when options turn filters on; `entitynet.curation.filters`): context joined by
      │    key (embeddings), record filters in order (ranked ones get a quantile threshold as a
      │    side input), then each group filter (GroupFilter: fit on a fixed sample, group, decide)
      ─► SelectEntries: subset (lineage roots) ─► entries (Aho-Corasick over alt texts ∪ finding
      │    entities)
      ─► Balance: CombineGlobally(count per entry) over the balanced splits [side input] ─► keep
      │    when any entry's draw < t / max(count, t)
      ─► shards (GroupByKey (split, shard) ─► WriteShard) or sorted key files merged by the
         driver into subset.npz as a stream
    every stage's removals ─► removed/ (sharded by key) and counts per reason
    harvest candidates/*.jsonl, records read, kept and removed ─► Count per (kind, entity[, reason])
    finish (combined counts: per entry, per split, per reason, per type, per entity) ─►
           curation_stats.json, entry_counts.tsv, unimaged_entities.tsv, DATACARD.md, TFDS metadata

No step holds a list of all records, hashes or keys: the side inputs are the entry counts
(bounded by the entities), and so are the per-entity counts that name the entities left without
an image (`entitynet.curation.unimaged`). The job graph holds paths and options only: the workers
read entities.jsonl (entries, subset, natural types), the harvest's candidates files and the
evaluation sets' hashes (a file the driver stages) themselves.

The DoFns are thin adapters over `entitynet.curation`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np

from beam_pipelines.common import (
    PipelineOutput,
    ReadShard,
    SumCounters,
    WriteJsonl,
    attribution_files,
    complete_dataset,
    remove_unlisted,
    run_pipeline,
    shard_inputs,
    shard_lengths,
    sum_shard_counts,
    write_shard_records,
)
from beam_pipelines.neardup import Contaminated, NearDupGroups, eval_index_lines
from entitynet import records, shards
from entitynet.curation import balance, filters, neardup
from entitynet.curation import card as curation_card
from entitynet.curation import unimaged as unimaged_lib
from entitynet.curation.evalsets import EvalSet
from entitynet.curation.metadata import EntityMetadata
from entitynet.curation.plan import CurateOptions, merge_group
from entitynet.curation.subsets import check_roots, entities_under
from entitynet.errors import EntityNetError, OutputError
from entitynet.files import atomic_open, write_json, write_lines
from entitynet.records import Entity, ImageRecord, Removal, read_jsonl, write_jsonl
from entitynet.storage import STORE

log = logging.getLogger("entitynet.curate")

STATS = shards.CURATION_STATS
CONFIG = "curation_config.json"
COUNTS = shards.ENTRY_COUNTS
REMOVED_DIR = shards.REMOVED_DIR
UNIMAGED = unimaged_lib.UNIMAGED
SUBSET = "subset.npz"
KEY_DIR = "subset_keys"  # the sorted key files subset.npz is merged from (kept beside it)


# ---------------------------------------------------------------- the pipeline


class ApplyPlan(beam.DoFn):
    """(key, {record, dirty: (eval set name, image ref), rep: its group's representative}) -> the
    record keyed by its representative, or a "contaminated:<set>" Removal per set."""

    def process(self, kv):
        _, joined = kv
        for split, r in joined["record"]:
            hits = sorted(set(joined["dirty"]))
            if hits:
                for name, ref in hits:
                    yield beam.pvalue.TaggedOutput(
                        "removed", Removal(r.key, f"contaminated:{name}", ref, r.entity_ids)
                    )
                continue
            reps = list(joined["rep"])
            if reps:
                yield reps[0], (split, r)  # a near-duplicate group's member: merged by its representative
            else:
                yield beam.pvalue.TaggedOutput("single", (split, r))  # alone: no second shuffle


class MergeGroup(beam.DoFn):
    def process(self, kv):
        members = list(kv[1])
        split, merged, _ = merge_group(kv[0], members)
        for _, r in members:
            if r.key != kv[0]:
                yield beam.pvalue.TaggedOutput(
                    "removed", Removal(r.key, "near_duplicate", kv[0], r.entity_ids)
                )
        yield split, merged


class Entries(beam.DoFn):
    """(split, record) -> (split, record, entries), dropping records outside the subset (the entities
    under `roots`, when given). The entities are read from their file once per worker."""

    def __init__(self, entities: str, roots: tuple[str, ...]):
        self.entities, self.roots = entities, roots

    def setup(self):
        entities = list(read_jsonl(self.entities, Entity))
        self.metadata = EntityMetadata(entities)
        self.subset = entities_under(entities, self.roots) if self.roots else None

    def process(self, item):
        split, r = item
        if self.subset is not None and not self.subset & set(r.entity_ids):
            yield beam.pvalue.TaggedOutput("removed", Removal(r.key, "outside_subset", "", r.entity_ids))
            return
        entries = self.metadata.entries(r.alt_texts, r.entity_ids)
        if not entries:
            yield beam.pvalue.TaggedOutput("removed", Removal(r.key, "no_entry", "", r.entity_ids))
            return
        yield split, r, entries


class StageOut(NamedTuple):
    """What a stage of the curation chain gives: the records it keeps (the next stage's input), the
    Removal of each record it removes, and its side products by name (counts for the stats)."""

    records: Any
    removed: Any
    side: dict


class Deduplicate(beam.PTransform):
    """The chain's first stage, on the records' perceptual hashes: decontamination (a record within
    the threshold of an evaluation image goes as "contaminated:<set>") and near-duplicate merging
    (a group of records within the threshold of each other becomes its representative, carrying
    the others' texts; they go as "near_duplicate"), applied in one join of the records. Side:
    "neardup", the near-duplicate search's counts (capped buckets, unconverged edges)."""

    def __init__(self, opts: CurateOptions, eval_index: str, eval_images: int, total: int):
        super().__init__()
        self.opts, self.eval_index, self.eval_images, self.total = opts, eval_index, eval_images, total

    def expand(self, recs):
        p, opts, total = recs.pipeline, self.opts, self.total
        # phash as a signed 64-bit int: Beam's integer coder carries no larger (neardup reads it mod 2**64)
        hashes = recs | "HashOf" >> beam.Map(
            lambda sr: (
                sr[1].key,
                sr[1].phash - (1 << 64) if sr[1].phash >= 1 << 63 else sr[1].phash,
                sr[1].width * sr[1].height,
            )
        )
        if self.eval_index and self.eval_images:
            bands = neardup.choose_bands(total, self.eval_images, opts.decontam_threshold)
            dirty = (
                hashes
                | "KeyHash" >> beam.Map(lambda t: (t[0], t[1]))
                | Contaminated(self.eval_index, opts.decontam_threshold, bands)
            )
        else:
            dirty = p | "NoEvalSets" >> beam.Create([])
        joined_hashes = {
            "hash": hashes | "HashByKey" >> beam.Map(lambda t: (t[0], t)),
            "dirty": dirty,
        } | "JoinDirty" >> beam.CoGroupByKey()
        clean = joined_hashes | "Clean" >> beam.FlatMap(
            lambda kv: [] if kv[1]["dirty"] else list(kv[1]["hash"])
        )
        if opts.near_dup_threshold is not None:
            k = opts.near_dup_threshold
            groups = clean | NearDupGroups(k, neardup.choose_bands(total, total, k))
            reps, capped, unconverged = groups["representative"], groups["capped"], groups["unconverged"]
        else:
            reps = p | "NoNearDup" >> beam.Create([])
            capped = p | "NoCapped" >> beam.Create([])
            unconverged = p | "NoUnconverged" >> beam.Create([0])
        applied = (
            {
                "record": recs | "RecordByKey" >> beam.Map(lambda sr: (sr[1].key, sr)),
                "dirty": dirty,
                "rep": reps,
            }
            | "JoinPlan" >> beam.CoGroupByKey()
            | "Apply"
            >> beam.ParDo(ApplyPlan())
            .with_output_types(tuple[str, tuple[str, ImageRecord]])
            .with_outputs("removed", "single", main="records")
        )
        neardup_counts = (
            (
                capped | "CappedBuckets" >> beam.Map(lambda n: Counter(capped_buckets=1, capped_members=n)),
                unconverged | "Unconverged" >> beam.Map(lambda n: Counter(unconverged_edges=n)),
            )
            | "NearDupCounts" >> beam.Flatten()
            | "SumNearDup" >> beam.CombineGlobally(SumCounters())
        )
        merged = (
            applied.records
            | "ByGroup" >> beam.GroupByKey()
            | "Merge" >> beam.ParDo(MergeGroup()).with_outputs("removed", main="records")
        )
        return StageOut(
            (merged.records, applied.single) | "AllRecords" >> beam.Flatten(),
            (applied.removed, merged.removed) | "DedupRemovals" >> beam.Flatten(),
            {"neardup": neardup_counts},
        )


class SelectEntries(beam.PTransform):
    """(split, record) -> (split, record, entries): the records of the subset (`Entries`: removed
    as "outside_subset") that name an entry balancing counts (else "no_entry")."""

    def __init__(self, entities: str, roots: tuple[str, ...]):
        super().__init__()
        self.entities, self.roots = entities, roots

    def expand(self, items):
        out = items | "Entries" >> beam.ParDo(Entries(self.entities, self.roots)).with_outputs(
            "removed", main="records"
        )
        return StageOut(out.records, out.removed, {})


class Balance(beam.PTransform):
    """MetaCLIP's balancing of (split, record, entries) over the balanced splits: a record stays
    when any of its entries' draws is below t / max(count, t) (else "balanced_out"), the entry
    counts a side input combined over the records (bounded by the entries). Side: "counts_before"
    and "counts_after", (entry, count) per entry."""

    def __init__(self, t: int, seed: int, splits: tuple[str, ...]):
        super().__init__()
        self.t, self.seed, self.splits = t, seed, frozenset(splits)

    def expand(self, items):
        splits, t, seed = self.splits, self.t, self.seed

        def entry_counts(pcoll, label):
            return (
                pcoll
                | f"{label}ToBalance" >> beam.Filter(lambda sre: sre[0] in splits)
                | f"{label}EntryOf" >> beam.FlatMap(lambda sre: sre[2])
                | f"{label}CountEntries" >> beam.combiners.Count.PerElement()
            )

        def decide(sre, counts_):
            split, r, entries = sre
            if split not in splits or balance.keep(r.url, entries, counts_, t, seed):
                yield split, r, entries
            else:
                yield beam.pvalue.TaggedOutput(
                    "removed", Removal(r.key, "balanced_out", ",".join(entries), r.entity_ids)
                )

        before = entry_counts(items, "Before")
        kept = items | "Draw" >> beam.ParDo(decide, beam.pvalue.AsDict(before)).with_outputs(
            "removed", main="records"
        )
        return StageOut(
            kept.records,
            kept.removed,
            {"counts_before": before, "counts_after": entry_counts(kept.records, "After")},
        )


class RunFilters(beam.PTransform):
    """(split, record) -> the records the filters keep, the removals of the others, and (side
    "amended") the amendments' counts per (filter, "records" | "dropped"). Each record's context is joined by
    key (its embeddings, read by the workers from the embed output's files); the record filters
    run first, in order, then each group filter (`GroupFilter`) on what they kept. A filter with
    a `top` fraction gets its threshold from the quantiles of every record's score (a side input
    of one value per filter). Nothing here knows a filter by name (`entitynet.curation.filters`)."""

    QUANTILES = 1001

    def __init__(self, chain, embeddings: str, total: int):
        super().__init__()
        self.record_filters, self.group_filters = chain.record_filters, chain.group_filters
        self.needs, self.embeddings, self.total = chain.needs, embeddings, total

    def expand(self, records):
        p = records.pipeline
        joined_inputs = {"record": records | "FilterKey" >> beam.Map(lambda sr: (sr[1].key, sr))}
        if "embeddings" in self.needs:
            joined_inputs["embeddings"] = (
                p
                | "EmbeddingFiles" >> beam.Create(filters.embedding_files(self.embeddings))
                | "EmbeddingRows" >> beam.FlatMap(filters.embedding_rows)
            )
        joined = joined_inputs | "JoinContext" >> beam.CoGroupByKey()
        ranked = [f for f in self.record_filters if getattr(f, "top", None)]
        thresholds = [
            joined
            | f"Scores{i}" >> beam.FlatMap(_scores, f)
            | f"Quantiles{i}" >> beam.ApproximateQuantiles.Globally(self.QUANTILES)
            | f"Threshold{i}" >> beam.Map(_threshold, f)
            for i, f in enumerate(ranked)
        ] or [p | "NoThresholds" >> beam.Create([{}])]
        if len(thresholds) > 1:
            thresholds = [
                thresholds
                | "AllThresholds" >> beam.Flatten()
                | "OneDict" >> beam.CombineGlobally(lambda ds: {k: v for d in ds for k, v in d.items()})
            ]
        out = joined | "Filters" >> beam.ParDo(
            _Filter(self.record_filters), beam.pvalue.AsSingleton(thresholds[0])
        ).with_outputs("removed", "amended", main="records")
        items, removed = out.records, [out.removed]
        for i, f in enumerate(self.group_filters):
            items, gone = items | f"Group{i}" >> GroupFilter(f, self.total)
            removed.append(gone)
        kept = items | "Unkey" >> beam.Map(lambda kv: kv[1][:2])
        amended = (
            out.amended
            | "AmendedOf" >> beam.FlatMap(lambda nc: [((nc[0], "records"), 1), ((nc[0], "dropped"), nc[1])])
            | "CountAmended" >> beam.CombinePerKey(sum)
        )
        return StageOut(kept, removed | "FilterRemovals" >> beam.Flatten(), {"amended": amended})


class GroupFilter(beam.PTransform):
    """(key, (split, record, context)) -> the records a group filter keeps, and the removals of
    the others: its model fitted on a fixed sample (the `sample_size(total)` records whose
    `sample_rank` is lowest; in one worker, bounded by the sample), each record put in its groups
    (`groups_of`, in batches), each group decided on its own (memory bounded by a group). A record
    in two groups may be decided twice: the smallest decision stands, whatever the runner."""

    def __init__(self, f, total: int):
        super().__init__()
        self.f, self.total = f, total

    def expand(self, items):
        f, total = self.f, self.total
        vectors = items | "Member" >> beam.FlatMap(_member, f)
        model = (
            vectors
            | "Sample" >> beam.combiners.Top.Of(f.sample_size(total), key=lambda t: -f.sample_rank(t[0]))
            | "Fit"
            >> beam.Map(
                lambda rows: (
                    f.fit(np.stack([v for _, v, _ in sorted(rows, key=lambda t: t[0])]), total)
                    if rows
                    else None
                )
            )
        )
        decided = (
            vectors
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=4096)
            | "GroupOf" >> beam.FlatMap(_groups_of, f, beam.pvalue.AsSingleton(model))
            | "ByGroup" >> beam.GroupByKey()
            | "Within" >> beam.FlatMap(lambda kv: sorted(f.within(list(kv[1])).items()))
        )
        out = (
            {"item": items, "why": decided}
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "Apply" >> beam.FlatMap(_apply_decision).with_outputs("removed", main="records")
        )
        return out.records, out.removed


def _member(kv, f):
    split, r, context = kv[1]
    m = f.member(kv[0], r, context)
    if m is not None:
        yield kv[0], m[0], m[1]


def _groups_of(batch, f, model):
    """(group, member) for each group of each member of a batch."""
    if model is None or not batch:
        return
    for t, groups in zip(batch, f.groups_of(np.stack([v for _, v, _ in batch]), model), strict=True):
        for g in groups:
            yield g, t


def _apply_decision(kv):
    grouped = kv[1]
    why = min(grouped["why"], default=None)  # decided in two groups: the same one on every runner
    for item in grouped["item"]:
        if why is None:
            yield kv[0], item
        else:
            r = item[1]
            yield beam.pvalue.TaggedOutput("removed", Removal(r.key, why[0], why[1], r.entity_ids))


def _context(grouped) -> dict:
    return {name: next(iter(values), None) for name, values in grouped.items() if name != "record"}


def _scores(kv, f):
    """The score of each record `f` ranks (records without one are not ranked)."""
    grouped = kv[1]
    if list(grouped["record"]):
        s = f.score(_context(grouped))
        if s is not None:
            yield s


def _threshold(quantiles: list, f) -> dict:
    """`f`'s score threshold: the quantile below which its `top` fraction is not."""
    if not quantiles:
        return {}
    return {f.name: float(quantiles[round((1.0 - f.top) * (len(quantiles) - 1))])}


class _Filter(beam.DoFn):
    """(key, {record, context...}) -> (key, (split, record, context)) kept by every record filter
    (amended by those that amend it), or the first filter's removal."""

    def __init__(self, chain: tuple):
        self.chain = chain

    def process(self, kv, thresholds):
        grouped = kv[1]
        context = _context(grouped)
        for split, r in grouped["record"]:
            for f in self.chain:
                why = f.decide(r, context, thresholds.get(f.name))
                if isinstance(why, filters.Amend):
                    r = why.record
                    yield beam.pvalue.TaggedOutput("amended", (f.name, why.count))
                elif why is not None:
                    yield beam.pvalue.TaggedOutput("removed", Removal(r.key, why[0], why[1], r.entity_ids))
                    break
            else:
                yield kv[0], (split, r, context)


class TypesOf(beam.DoFn):
    """(split, record, entries) -> the natural types of its entries (an entity's natural type label,
    else its id; "?" for an entry no entity has), from the entities file read once per worker."""

    def __init__(self, entities: str):
        self.entities = entities

    def setup(self):
        self.natural = {
            e.id: e.natural_type_label or e.natural_type or "?" for e in read_jsonl(self.entities, Entity)
        }

    def process(self, sre):
        yield from {self.natural.get(e, "?") for e in sre[2]}


def candidate_entities(path: str):
    """("candidates", entity) for each entity that named a candidate URL in a harvest's candidates
    file, streamed line by line."""
    with io.TextIOWrapper(STORE.open(path), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                for e in sorted(set(json.loads(line).get("entity_ids") or ())):
                    yield "candidates", e


def kept_entity_keys(sre):
    """A kept record's per-entity keys: its linked entities, and the entries only its alt texts name."""
    _, r, entries = sre
    linked = set(r.entity_ids)
    return [("kept", e) for e in sorted(linked)] + [("named", e) for e in sorted(set(entries) - linked)]


class WriteShard(beam.DoFn):
    def __init__(self, out_dir: str, num_shards: int):
        self.out_dir, self.num_shards = out_dir, num_shards

    def process(self, kv):
        (split, shard), recs = kv
        yield write_shard_records(self.out_dir, split, shard, self.num_shards, recs)[1]


def build(
    p,
    inputs,
    entities: str,
    eval_index: str,
    opts: CurateOptions,
    out_dir: str,
    staged: str,
    total: int = 0,
    eval_images: int = 0,
    candidate_files: Sequence[str] = (),
) -> None:
    """`inputs`: (split, shard path) pairs; `entities`: the path of entities.jsonl; `eval_index`: the
    path of the evaluation images' index (`neardup.eval_index_lines`; "": none) and `eval_images`
    how many it lists; `total`: the number of input records (from the shards' metadata), to size
    the bands; `candidate_files`: the harvest's candidates files, counted per entity. The graph
    holds paths and options: workers read the files."""
    recs = p | "Shards" >> beam.Create(inputs) | "Read" >> beam.ParDo(ReadShard())
    # the chain: each stage takes what the one before kept; its removals and side counts are
    # gathered here, whatever the stage
    chain = opts.filters
    stages: list[tuple[str, beam.PTransform]] = [
        ("Deduplicate", Deduplicate(opts, eval_index, eval_images, total)),
        *([("RecordFilters", RunFilters(chain, opts.embeddings, total))] if chain else []),
        ("SelectEntries", SelectEntries(entities, tuple(opts.subset_roots))),
        ("Balance", Balance(opts.t, opts.seed, tuple(opts.balance_splits))),
    ]
    items, removed_by_stage, side = recs, [], {}
    for label, stage in stages:
        out = items | label >> stage
        items = out.records
        removed_by_stage.append(out.removed)
        side.update(out.side)
    kept = items
    counts, counts_after, neardup_counts = side["counts_before"], side["counts_after"], side["neardup"]
    amended_counts = side["amended"] if "amended" in side else p | "NoAmendments" >> beam.Create([])
    if opts.output == "shards":
        written = (
            kept
            | "ToShard"
            >> beam.Map(lambda sre: ((sre[0], shards.shard_of(sre[1].key, opts.num_shards)), sre[1]))
            | "ByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(WriteShard(out_dir, opts.num_shards))
        )
    else:
        written = p | "NoShards" >> beam.Create([])
    kept_per_split = (
        kept
        | "SplitOfKept" >> beam.Map(lambda sre: sre[0])
        | "CountKept" >> (beam.combiners.Count.PerElement())
    )
    if opts.output == "subset":  # sorted key files, merged into subset.npz by the driver as a stream
        key_files = kept | WriteKeys(out_dir, opts.num_shards)
    else:
        key_files = p | "NoKeyFiles" >> beam.Create([])
    types = (
        kept | "TypeOf" >> beam.ParDo(TypesOf(entities)) | "CountTypes" >> beam.combiners.Count.PerElement()
    )
    removals = removed_by_stage | "Removed" >> beam.Flatten()
    removed = (
        removals
        | "ReasonOf" >> beam.Map(lambda rm: rm.reason)
        | "CountRemoved" >> beam.combiners.Count.PerElement()
    )
    # every removed record with its reason, sharded by key (the explorer shows why each went)
    removed_files = removals | WriteJsonl(
        out_dir, REMOVED_DIR, opts.num_shards, lambda rm: f"{rm.key}\t{rm.reason}", records.to_json
    )
    read_counts = (
        recs | "SplitOf" >> beam.Map(lambda sr: sr[0]) | "CountRead" >> beam.combiners.Count.PerElement()
    )
    if candidate_files:
        candidate_keys = (
            p
            | "CandidateFiles" >> beam.Create(list(candidate_files))
            | "CandidateEntities" >> beam.FlatMap(candidate_entities)
        )
    else:
        candidate_keys = p | "NoCandidateFiles" >> beam.Create([])
    # per (kind, entity[, reason]), bounded by the entities: which are left without an image, and why
    per_entity = (
        (
            candidate_keys,
            recs
            | "HarvestedOf"
            >> beam.FlatMap(lambda sr: [("harvested", e) for e in sorted(set(sr[1].entity_ids))]),
            kept | "KeptOf" >> beam.FlatMap(kept_entity_keys),
            removals
            | "RemovedOf"
            >> beam.FlatMap(lambda rm: [("removed", e, rm.reason) for e in sorted(set(rm.entity_ids))]),
        )
        | "EntityKeys" >> beam.Flatten()
        | "CountPerEntity" >> beam.combiners.Count.PerElement()
    )

    def finish(
        _,
        before,
        after,
        shard_stats,
        kept_,
        key_files_,
        types_,
        removed_,
        read_,
        neardup_,
        rm_files,
        per_entity_,
        amended_,
    ):
        # every side input here is bounded by the entries, splits, reasons or files, not the data
        result = {
            "read": dict(read_),
            "removed": dict(removed_),
            "counts_before": dict(before),
            "counts_after": dict(after),
            "types": dict(types_),
            "shards": sorted(shard_stats, key=lambda s: (s["split"], s["shard"])),
            "kept": dict(kept_),
            "key_files": sorted(key_files_),
            "removed_files": sorted(rm_files),
            "entity_counts": [[list(k), n] for k, n in per_entity_],
            "amended": {f"{name}:{what}": n for (name, what), n in sorted(amended_)},
            "neardup": {
                k: neardup_.get(k, 0) for k in ("capped_buckets", "capped_members", "unconverged_edges")
            },
        }
        STORE.write(staged, json.dumps(result).encode())
        yield sum(result["kept"].values())

    (
        p
        | "Finally" >> beam.Create([None])
        | "Finish"
        >> beam.FlatMap(
            finish,
            beam.pvalue.AsList(counts),
            beam.pvalue.AsList(counts_after),
            beam.pvalue.AsList(written),
            beam.pvalue.AsList(kept_per_split),
            beam.pvalue.AsList(key_files),
            beam.pvalue.AsList(types),
            beam.pvalue.AsList(removed),
            beam.pvalue.AsList(read_counts),
            beam.pvalue.AsSingleton(neardup_counts),
            beam.pvalue.AsList(removed_files),
            beam.pvalue.AsList(per_entity),
            beam.pvalue.AsList(amended_counts),
        )
    )


class WriteKeys(beam.PTransform):
    """The kept (split, key) pairs as `num_shards` sorted text files `subset_keys/keys-*.tsv`
    ("split<TAB>key" lines, atomic per file); outputs the file names."""

    def __init__(self, out_dir: str, num_shards: int):
        super().__init__("WriteKeys")
        self.out_dir, self.num_shards = out_dir, num_shards

    def expand(self, pcoll):
        out_dir, n = self.out_dir, self.num_shards

        def write(kv):
            index, lines = kv
            name = f"{KEY_DIR}/keys-{index:05d}-of-{n:05d}.tsv"
            STORE.write(STORE.join(out_dir, name), "".join(x + "\n" for x in sorted(lines)).encode())
            yield name

        return (
            pcoll
            | "Line" >> beam.Map(lambda sre: f"{sre[0]}\t{sre[1].key}")
            | "ToFile" >> beam.Map(lambda line: (zlib.crc32(line.encode()) % n, line))
            | "ByFile" >> beam.GroupByKey()
            | "Write" >> beam.FlatMap(write)
        )


def merge_subset(
    out_dir: str, key_files: list[str], kept: dict[str, int], splits: list[str], dest: str
) -> None:
    """subset.npz from sorted key files by a k-way streaming merge: each split's (hi, lo) array is
    written into the archive in chunks, so the driver never holds the kept keys."""
    import heapq
    import zipfile

    def lines(name):
        with STORE.open(STORE.join(out_dir, name)) as f:
            for raw in io.TextIOWrapper(f, encoding="utf-8"):
                yield raw.rstrip("\n")

    merged = heapq.merge(*(lines(n) for n in key_files))
    dtype = np.dtype(records.SUBSET_DTYPE)
    pending = next(merged, None)
    with atomic_open(dest, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for split in sorted(set(splits) | set(kept)):
            n = kept.get(split, 0)
            with z.open(f"{split}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array_header_1_0(
                    entry,
                    {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)},
                )
                chunk, written = [], 0
                while pending is not None and pending.split("\t", 1)[0] == split:
                    key = pending.split("\t", 1)[1]
                    chunk.append(records.subset_pair(key))
                    if len(chunk) == 65536:
                        entry.write(np.array(chunk, dtype=dtype).tobytes())
                        written, chunk = written + len(chunk), []
                    pending = next(merged, None)
                if chunk:
                    entry.write(np.array(chunk, dtype=dtype).tobytes())
                    written += len(chunk)
                if written != n:
                    raise OutputError(
                        f"subset keys of split {split!r}: {written} in the key files, {n} counted"
                    )
        with z.open("_version.npy", "w") as entry:
            np.lib.format.write_array(entry, np.asarray(records.SCHEMA_VERSION))


def amendments(flat: dict[str, int]) -> dict[str, dict[str, int]]:
    """{"filter:records": n, "filter:dropped": m} -> {filter: {"records": n, "dropped": m}}."""
    out: dict[str, dict[str, int]] = {}
    for k, n in flat.items():
        name, what = k.rsplit(":", 1)
        out.setdefault(name, {})[what] = n
    return out


def harvest_candidate_files(shard_dir: str) -> list[str] | None:
    """The candidates files of the harvest in `shard_dir`, as its stats list them; None when the
    input is not a harvest that lists them (then which entities had candidates is not known)."""
    data = STORE.read(STORE.join(shard_dir, shards.HARVEST_STATS))
    try:
        files = json.loads(data)["files"]["candidates"] if data is not None else None
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list):
        return None
    return [STORE.join(shard_dir, str(n)) for n in files]


def run(
    shard_dir: str,
    entities: str | Sequence[Entity],
    eval_sets: list[EvalSet],
    opts: CurateOptions,
    out_dir: str,
    beam_args: list[str] | None = None,
) -> dict:
    """Curate the harvest in `shard_dir` into `out_dir`; returns the stats.

    `entities`: the path of entities.jsonl (local or remote), which the workers read; tests and
    tools may give the entities themselves, written to a staged file in `out_dir` first. The
    evaluation sets' hashes go to a staged file too: the job graph holds paths, not data."""
    started = time.time()
    entities_given = entities if isinstance(entities, str) else ""  # recorded for `train --data`
    if entities_given and "://" not in entities_given:
        entities_given = os.path.abspath(entities_given)

    def each_entity():
        return read_jsonl(entities, Entity) if isinstance(entities, str) else iter(entities)

    n_entities, labels = 0, {}
    for e in each_entity():  # the driver's summary: the labels for entry_counts.tsv and the card
        n_entities += 1
        labels[e.id] = e.label
    if not n_entities and isinstance(entities, str):
        raise EntityNetError(
            f"{entities} holds no entities; give the entities.jsonl that `entitynet kg expand` wrote (it never "
            "writes an empty one: its error says why nothing was found)"
        )
    if not n_entities:
        raise EntityNetError("no entities to balance over; give the entities.jsonl the harvest was made from")
    if os.path.abspath(out_dir.rstrip("/")) == os.path.abspath(shard_dir.rstrip("/")):
        raise OutputError(f"--out {out_dir} is the input --shards; curate into another directory")
    inputs, splits, total = shard_inputs(shard_dir)
    selected = None  # the entities the curated dataset is for (the subset's), by id
    if opts.subset_roots:  # refused here, before anything runs; the workers select the subset themselves
        selected = check_roots(each_entity(), opts.subset_roots)
    candidate_files = harvest_candidate_files(shard_dir)
    eval_images = sum(len(ev.hashes) for ev in eval_sets)
    with PipelineOutput(out_dir, "entitynet-curate-", "curate", earlier=(CONFIG,)) as out:
        local_dir = out.local_dir
        staged = out.staged(STATS)
        if not isinstance(entities, str):
            entities_file = out.staged("entities.jsonl")
            write_jsonl(entities_file, entities)
            entities = entities_file
        eval_index = ""
        if eval_images:
            eval_index = out.staged("eval_hashes.jsonl")
            STORE.write(eval_index, "".join(line + "\n" for line in eval_index_lines(eval_sets)).encode())
        log.info("curating %d shards of %s into %s", len(inputs), shard_dir, out_dir)
        run_pipeline(
            lambda p: build(
                p,
                inputs,
                entities,
                eval_index,
                opts,
                out_dir,
                staged,
                total,
                eval_images,
                candidate_files or (),
            ),
            beam_args,
        )
        result = json.loads(out.store.read(staged) or b"null")
        if not isinstance(result, dict):
            raise OutputError(f"the pipeline's result {staged} is missing; re-run the curation")
        before, after = result["counts_before"], result["counts_after"]
        if not sum(result["kept"].values()):
            why = ", ".join(f"{k} {n:,}" for k, n in sorted(result["removed"].items(), key=lambda kv: -kv[1]))
            raise OutputError(
                f"the curation of {shard_dir} kept none of its {sum(result['read'].values()):,} records "
                f"(removed: {why or 'none'}); no dataset was written ({out_dir}/removed/ says why each record went): "
                "loosen what removed them and run it again"
            )

        if opts.output == "shards":
            lengths, sizes = shard_lengths(result["shards"], splits, opts.num_shards)
            complete_dataset(out_dir, local_dir, lengths, sizes, opts.num_shards, result["shards"])
        else:
            merge_subset(
                out_dir, result["key_files"], result["kept"], splits, os.path.join(local_dir, SUBSET)
            )
        write_lines(
            os.path.join(local_dir, COUNTS),
            ["entity\tlabel\tbefore\tafter"]
            + [
                f"{e}\t{labels.get(e, '')}\t{n}\t{after.get(e, 0)}"
                for e, n in sorted(before.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        )
        no_image = unimaged_lib.unimaged(
            each_entity(),
            {tuple(k): n for k, n in result["entity_counts"]},
            candidate_files is not None,
            selected,
        )
        write_lines(os.path.join(local_dir, UNIMAGED), unimaged_lib.tsv_lines(no_image))
        balanced_kept = sum(result["kept"].get(s, 0) for s in opts.balance_splits)
        balanced_in = balanced_kept + result["removed"].get("balanced_out", 0)
        stats = {
            "input": shard_dir if "://" in shard_dir else os.path.abspath(shard_dir),
            "read": result["read"],
            "kept": {s: result["kept"].get(s, 0) for s in splits},
            "removed": dict(sorted(result["removed"].items())),
            "amended": amendments(result["amended"]),
            "contamination": {
                ev.name: result["removed"].get(f"contaminated:{ev.name}", 0) for ev in eval_sets
            },
            "eval_sets": {
                ev.name: {"images": len(ev.hashes), "unreadable": ev.unreadable} for ev in eval_sets
            },
            "balance": {
                "t": opts.t,
                "before": balance.head_tail(before, opts.t),
                "after": balance.head_tail(after, opts.t),
                "images": {"before": balanced_in, "after": balanced_kept},
                "explained": balance.explain(opts.t, before, balanced_in, balanced_kept, opts.balance_splits),
            },
            "unimaged": unimaged_lib.summary(
                no_image, len(selected) if selected is not None else len(labels), bool(opts.subset_roots)
            ),
            "types": dict(sorted(result["types"].items(), key=lambda kv: -kv[1])),
            "output": opts.output,
            "neardup": result["neardup"],
            "files": {REMOVED_DIR: result["removed_files"]},
        }
        if opts.output == "shards":  # the kept records per licence and source (from the shard writers)
            stats["per_license"] = sum_shard_counts(result["shards"], "per_license")
            stats["per_source"] = sum_shard_counts(result["shards"], "per_source")
        curation_card.write_card(local_dir, stats, before, after, labels, no_image)
        write_json(
            os.path.join(local_dir, CONFIG),
            {
                "curate": asdict(opts),
                "shards": shard_dir,
                "entities": n_entities,
                "entities_file": entities_given,
                "eval_sets": [ev.name for ev in eval_sets],
                "beam_args": list(beam_args or []),
            },
        )
        stats["seconds"] = round(time.time() - started, 2)
        write_json(os.path.join(local_dir, STATS), stats)
        if opts.output == "shards":
            layout = shards.layout_of(lengths)
            out.finish(keep=[n for names in layout.values() for n in names], obsolete=(SUBSET,))
            remove_unlisted(out_dir, KEY_DIR, [])
            remove_unlisted(out_dir, shards.ATTRIBUTION_DIR, attribution_files(layout))
            remove_unlisted(out_dir, REMOVED_DIR, result["removed_files"])
        else:  # a subset replaces shards an earlier run wrote here
            out.finish(keep=[], obsolete=("dataset_info.json", "features.json", shards.FINGERPRINT))
            remove_unlisted(out_dir, KEY_DIR, result["key_files"])
            remove_unlisted(out_dir, shards.ATTRIBUTION_DIR, [])
            remove_unlisted(out_dir, REMOVED_DIR, result["removed_files"])
    return stats
