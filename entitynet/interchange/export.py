"""What an export of a dataset is made of: the options, the text of each sample, the shards.

A sample's text (`KEY.txt`, the `caption` column) is chosen as training chooses it
(`entitynet.text.captions.TextChooser`): `alt` takes one of the record's alt texts (a KG caption when
it has none), `kg` a knowledge-graph caption of one of its entities (an alt text when none is
known), `mix` an alt text with probability `alt_text_chance`, else a KG caption. The draw of a record
uses a generator seeded by (seed, the record's key): the same export every time, however the records
are spread over workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from entitynet.errors import ConfigError
from entitynet.options import option
from entitynet.records import Entity, ImageRecord, export_sample
from entitynet.text.captions import TextChooser

FORMATS = ("webdataset", "parquet")
TEXTS = ("alt", "kg", "mix")
_CHANCE = {"alt": 1.0, "kg": 0.0}


@dataclass(frozen=True)
class ExportOptions:
    format: str = option(
        "webdataset", "webdataset (img2dataset's layout) or parquet (with image bytes)", choices=FORMATS
    )
    split: str = option("train", "the split of the dataset to export")
    text: str = option(
        "alt",
        "the text of each sample: alt (an alt text), kg (a knowledge-graph caption of its entities) or "
        "mix (alt with probability --alt-text-chance, else kg; as training draws)",
        choices=TEXTS,
    )
    alt_text_chance: float = option(0.5, "with --text mix: the share of alt texts")
    seed: int = option(0, "seed of the text draws (per record: the same export every run)")
    target_shard_mb: float = option(
        256.0, "target size of a shard in MB (the number of shards follows from the data's size)"
    )
    num_shards: int = option(0, "this many shards instead of --target-shard-mb (0: from the size)")

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.text not in TEXTS:
            raise ConfigError(f"--text must be one of {', '.join(TEXTS)}, got {self.text!r}")
        if not 0.0 <= self.alt_text_chance <= 1.0:
            raise ConfigError(f"--alt-text-chance must be within 0..1, got {self.alt_text_chance}")
        if not 0.01 <= self.target_shard_mb <= 100_000:
            raise ConfigError(f"--target-shard-mb must be within 0.01..100000, got {self.target_shard_mb}")
        if not 0 <= self.num_shards <= 100_000:
            raise ConfigError(f"--num-shards must be within 0..100000, got {self.num_shards}")

    @property
    def chance(self) -> float:
        """The alt-text chance of the text choice."""
        return _CHANCE.get(self.text, self.alt_text_chance)


def plan_shards(records: int, num_bytes: int, opts: ExportOptions) -> int:
    """How many shards an export of `records` records of `num_bytes` bytes (as stored) is written to:
    `num_shards` when given, else enough for `target_shard_mb` each (at least 1, at most one per
    record)."""
    if opts.num_shards:
        return opts.num_shards
    wanted = math.ceil(num_bytes / (opts.target_shard_mb * 1e6)) if num_bytes else 1
    return max(1, min(wanted, max(records, 1)))


def record_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one record's text draws: seeded by the export's seed and the record's key."""
    try:
        hi, lo = int(key[:16], 16), int(key[16:32] or "0", 16)
    except ValueError:
        hi, lo = int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "big"), 0
    return np.random.default_rng([seed, hi, lo])


class SampleMaker:
    """Records to samples (`entitynet.records.export_sample`): the text chosen, the KG captions and
    the entities' names added. Made once per worker from the entities (none: alt texts only)."""

    def __init__(self, entities: list[Entity], opts: ExportOptions):
        self.opts = opts
        self.chooser = TextChooser(entities, opts.chance)
        self.names = {e.id: e.label for e in entities}

    def kg_captions(self, record: ImageRecord) -> list[str]:
        """The KG captions of the record's known entities, likeliest first, each text once."""
        seen: dict[str, float] = {}
        for e in record.entity_ids:
            if e in self.chooser.by_id:
                for c in self.chooser.candidates(e):
                    seen[c.text] = max(seen.get(c.text, 0.0), c.weight)
        return [t for t, _ in sorted(seen.items(), key=lambda tw: (-tw[1], tw[0]))]

    def sample(self, record: ImageRecord) -> dict | None:
        """The record's sample, or None when it has no text at all (no alt text, no known entity)."""
        text, source = self.chooser.choose(record, record_rng(self.opts.seed, record.key))
        if not text.strip():
            return None
        return export_sample(record, text, source, self.kg_captions(record), self.names)
