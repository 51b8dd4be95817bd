"""Curation's plain steps, the ones its Beam DoFns call: the options of a run, the plan made from
every record's (key, pHash, pixels) (which keys an evaluation set contaminates, which belong to a
near-duplicate group and its representative), and the merge of one near-duplicate group."""

from __future__ import annotations

from dataclasses import dataclass

from entitynet import records
from entitynet.curation import neardup
from entitynet.curation.evalsets import EvalSet, contaminated
from entitynet.errors import ConfigError
from entitynet.records import ImageRecord


@dataclass(frozen=True)
class CurateOptions:
    t: int = 20_000  # MetaCLIP's per-entry threshold
    seed: int = 0
    near_dup_threshold: int | None = 4  # Hamming distance over 64-bit pHashes; None: no near-dup merge
    decontam_threshold: int = 4
    subset_roots: tuple[str, ...] = ()
    balance_splits: tuple[str, ...] = ("train",)  # other splits are deduplicated and decontaminated only
    output: str = "shards"  # or "subset": a sorted key list per split instead of new shards
    num_shards: int = 4
    embeddings: str = ""  # an `entitynet embed` output: the model filters' context
    clip_score_min: float | None = None  # the clip_score filter (entitynet.curation.filters)
    clip_score_top: float | None = None
    semdedup_threshold: float | None = None  # semantic deduplication (entitynet.curation.semdedup)
    semdedup_clusters: int = 0  # k-means clusters; 0: about sqrt(records)

    def __post_init__(self):
        if self.t < 1:
            raise ConfigError(f"--t must be at least 1, got {self.t}")
        if self.output not in ("shards", "subset"):
            raise ConfigError(f"unknown --output {self.output!r}: use shards or subset")
        for k in (self.near_dup_threshold, self.decontam_threshold):
            if k is not None and not 0 <= k <= 32:
                raise ConfigError(f"Hamming thresholds must be within 0..32, got {k}")
        if self.num_shards < 1:
            raise ConfigError("--num-shards must be at least 1")
        if self.filters and not self.embeddings:
            raise ConfigError(
                "--clip-score-min and --clip-score-top need --embeddings DIR (`entitynet embed`)"
            )
        if self.semdedup_threshold is not None:
            if not self.embeddings:
                raise ConfigError("--semdedup-threshold needs --embeddings DIR (`entitynet embed`)")
            if not 0.0 < self.semdedup_threshold <= 1.0:
                raise ConfigError(
                    f"--semdedup-threshold must be a cosine within (0, 1], got {self.semdedup_threshold}"
                )
            if self.semdedup_clusters < 0:
                raise ConfigError(f"--semdedup-clusters must be >= 0, got {self.semdedup_clusters}")

    @property
    def filters(self) -> tuple:
        """The record filters these options turn on, in the order the chain runs them."""
        from entitynet.curation.filters import filter_chain

        return filter_chain(self.clip_score_min, self.clip_score_top)


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
