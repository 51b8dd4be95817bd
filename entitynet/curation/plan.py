"""Curation's plain steps, the ones its Beam DoFns call: the options of a run, the plan made from
every record's (key, pHash, pixels) (which keys an evaluation set contaminates, which belong to a
near-duplicate group and its representative), and the merge of one near-duplicate group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from entitynet import records
from entitynet.curation import neardup
from entitynet.curation.evalsets import EvalSet, contaminated
from entitynet.errors import ConfigError
from entitynet.options import check_all, declared, option
from entitynet.records import ImageRecord


@dataclass(frozen=True)
class CurateOptions:
    """A curation's options, each declared once (`entitynet.options`): the `curate` command's
    flags are made from these fields and from the filters' declarations, whose values
    `filter_options` holds (`CurateOptions.of(t=..., clip_score_min=...)` sorts them out)."""

    t: int = option(20_000, "MetaCLIP's per-entry threshold", low=1)
    seed: int = option(0, "seed of the balancing draws")
    near_dup_threshold: int | None = option(
        4,
        "Hamming distance over 64-bit pHashes of near-duplicates",
        metavar="BITS",
        low=0,
        high=32,
        off_flag="--no-near-dup",
        off_help="do not merge near-duplicates",
    )
    decontam_threshold: int = option(
        4, "Hamming distance to an evaluation image", metavar="BITS", low=0, high=32
    )
    subset_roots: tuple[str, ...] = option(
        (),
        "keep records with an entity below this root (repeatable), e.g. Q729 Q756",
        flag="--subset-root",
        metavar="QID",
        repeat=True,
    )
    balance_splits: tuple[str, ...] = option(
        ("train",),
        "a split to balance (repeatable; default: train); the others are deduplicated and decontaminated only",
        flag="--balance-split",
        metavar="SPLIT",
        repeat=True,
    )
    output: str = option(
        "shards",
        "new shards, or a subset (sorted key lists over the input shards)",
        choices=("shards", "subset"),
    )
    num_shards: int = option(4, "shards per split of the output", metavar="N", low=1)
    embeddings: str = option(
        "",
        "an `entitynet embed` output of the input shards: the context of the model filters",
        metavar="DIR",
    )
    filter_options: tuple[tuple[str, Any], ...] = ()  # (field, value) of the filters' options

    def __post_init__(self):
        check_all(self, declared(CurateOptions))
        if self.output not in ("shards", "subset"):
            raise ConfigError(f"unknown --output {self.output!r}: use shards or subset")
        _ = self.filters  # refuses what the filters refuse

    @classmethod
    def of(cls, **given: Any) -> CurateOptions:
        """Options from fields of this class and filter options, by name."""
        from entitynet.curation import filters

        own = {f.name for f in fields(cls)}
        defaults = {o.field: o.default for o in filters.options()}
        return cls(
            **{k: v for k, v in given.items() if k in own},
            filter_options=tuple(
                sorted(
                    (k, v)
                    for k, v in given.items()
                    if k not in own and (k not in defaults or v != defaults[k])
                )
            ),
        )

    def replace(self, **given: Any) -> CurateOptions:
        """A copy with some fields or filter options changed."""
        return CurateOptions.of(**{**asdict_shallow(self), **dict(self.filter_options), **given})

    @property
    def filters(self):
        """The filters these options turn on, in the order the chain runs them."""
        from entitynet.curation import filters

        return filters.chain(dict(self.filter_options), self.embeddings)


def asdict_shallow(opts: CurateOptions) -> dict[str, Any]:
    return {f.name: getattr(opts, f.name) for f in fields(opts) if f.name != "filter_options"}


def plan(items: list[tuple[str, int, int]], eval_sets: list[EvalSet], opts: CurateOptions) -> dict:
    """From every record's (key, phash, pixels): which keys are contaminated (-> eval set names) and
    which belong to a near-duplicate group (-> the group's representative)."""
    items = sorted(items)
    keys = [k for k, _, _ in items]
    hashes = neardup.as_hashes([h for _, h, _ in items])
    dirty = contaminated(keys, hashes, eval_sets, opts.decontam_threshold)
    clean = [i for i, k in enumerate(keys) if k not in dirty]
    reps = {}
    if opts.near_dup_threshold is not None and clean:
        reps = neardup.representatives(
            [keys[i] for i in clean],
            hashes[clean],
            [items[i][2] for i in clean],
            opts.near_dup_threshold,
        )
    return {"contaminated": dirty, "representative": reps}


def merge_group(rep_key: str, members: list[tuple[str, ImageRecord]]) -> tuple[str, ImageRecord, int]:
    """A near-duplicate group as one record: the representative's image and split, everything else
    merged; returns (split, record, how many merged away)."""
    members = sorted(members, key=lambda m: m[1].key)
    first = next(m for m in members if m[1].key == rep_key)
    others = [r for _, r in members if r.key != rep_key]
    return first[0], records.merge_images(first[1], others), len(others)
