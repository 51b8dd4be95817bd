"""Entity-balanced sampling at training time: MetaCLIP's balancing, drawn afresh every epoch.

    counts = entity_counts("demo-out/curated")        # entity id -> records (O(entities) memory)
    sampler = Balancer(counts, cap=0)                  # cap 0: the median entity's count
    sampler.keep_chance(record.entity_ids)             # 1 - prod_e (1 - min(1, cap / count_e))

Each pass over the data keeps a record with the chance MetaCLIP's curation gives it: an entity
linked to `count` records is kept `min(1, cap / count)` of the time, and a record is kept when
any of its entities is. An entity with fewer than `cap` records is seen every epoch in full; one
with more is seen about `cap` times an epoch, a different `cap` of its records each epoch (the
draw is the loader's, per record and epoch), so over a run the head's images are all used while
no entity dominates a batch. The counts come from a curation's entry_counts.tsv (its records
after curation, every split); a harvest without one is counted in one pass over the split's
entity links (memory grows with the entities, not the records).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from entitynet import records, shards
from entitynet.errors import ConfigError
from entitynet.storage import STORE

log = logging.getLogger("entitynet.train")


def entity_counts(directory: str, split: str = "train") -> dict[str, int]:
    """Records per entity: a curation's entry_counts.tsv ("after" column), else counted from the
    split's shards."""
    text = STORE.read(STORE.join(directory, shards.ENTRY_COUNTS))
    if text is not None:
        counts = {}
        for row in csv.DictReader(io.StringIO(text.decode("utf-8")), delimiter="\t"):
            try:
                n = int(row.get("after") or 0)
            except ValueError:
                raise ConfigError(
                    f"{STORE.join(directory, shards.ENTRY_COUNTS)}: 'after' is not a count in the row of "
                    f"{row.get('entity')!r}; re-run `entitynet curate` into a fresh --out"
                ) from None
            if n > 0:
                counts[row["entity"]] = n
        return counts
    log.info(
        "counting records per entity in the %s split of %s (no %s there)",
        split,
        directory,
        shards.ENTRY_COUNTS,
    )
    tally: Counter = Counter()
    for path in shards.shard_paths(directory, split):
        for record in shards.read_shard(path, decode=records.decode_for_training, chunk=256):
            tally.update(set(record.entity_ids))
    return dict(tally)


def median_cap(counts: Mapping[str, int]) -> int:
    """The automatic cap: the median of the entities' record counts (at least 1)."""
    values = sorted(counts.values())
    return max(1, values[len(values) // 2]) if values else 1


class Balancer:
    """Keep chances per record from per-entity counts; `cap` 0 picks `median_cap`."""

    def __init__(self, counts: Mapping[str, int], cap: int = 0):
        if not counts:
            raise ConfigError(
                "entity-balanced sampling (data.balance) found no entity counts: the shards link no "
                "records to entities; train without it (--config.data.balance='')"
            )
        self.cap = cap or median_cap(counts)
        self.counts = dict(counts)

    def keep_chance(self, entity_ids: Iterable[str]) -> float:
        """MetaCLIP's chance for a record with these entity links; a record with no counted entity
        (unlinked, an alt text only) is kept."""
        drop = 1.0
        seen = False
        for e in entity_ids:
            n = self.counts.get(e)
            if n:
                seen = True
                drop *= 1.0 - min(1.0, self.cap / n)
        return 1.0 - drop if seen else 1.0

    def expected_epoch(self) -> float:
        """Records an epoch keeps if each record had one entity: sum of min(count, cap)."""
        return float(sum(min(n, self.cap) for n in self.counts.values()))

    def describe(self) -> str:
        total = sum(self.counts.values())
        return (
            f"entity-balanced sampling: cap {self.cap} records per entity an epoch over {len(self.counts):,} "
            f"entities (about {self.expected_epoch():,.0f} of {total:,} entity links an epoch)"
        )


def keep(chance: float, rng: np.random.Generator) -> bool:
    """One draw of the loader's generator (always one, so the stream does not depend on `chance`)."""
    return bool(rng.random() < chance)
