"""MetaCLIP balancing ("Demystifying CLIP Data"): an entry matched by `count` records keeps each of
them with probability `t / max(count, t)`, so the tail is kept whole and the head is cut to about
`t`; a record is kept when the draw of any one of its entries succeeds, i.e. with probability
`1 - prod(1 - p[e])`.

Draws are a hash of (seed, URL, entry), not a random stream: the kept set depends only on the seed
and the data, never on the runner, the sharding or the order records arrive in. They are keyed by
the URL (a record's first, `ImageRecord.url`) rather than the image's content so that a pool can be
balanced before anything is fetched (`entitynet harvest --backend pool --balance-t`) and keep the
very set `curate` keeps afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

_SCALE = float(1 << 64)


def draw(seed: int, key: str, entry: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, key, entry)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}\x00{entry}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def keep_probability(count: int, t: int) -> float:
    return t / max(count, t) if count else 1.0


def keep(key: str, entries: Iterable[str], counts: Mapping[str, int], t: int, seed: int) -> bool:
    """Whether a record survives balancing; a record without entries does not (MetaCLIP drops
    unmatched pairs)."""
    return any(draw(seed, key, e) < keep_probability(counts.get(e, 0), t) for e in entries)


def record_probability(entries: Iterable[str], counts: Mapping[str, int], t: int) -> float:
    miss = 1.0
    for e in entries:
        miss *= 1.0 - keep_probability(counts.get(e, 0), t)
    return 1.0 - miss


def head_tail(counts: Mapping[str, int], t: int) -> dict:
    """How many entries are head (count > t, sub-sampled) and tail (kept whole), and their matches."""
    head = {e: c for e, c in counts.items() if c > t}
    return {
        "entries": len(counts),
        "head_entries": len(head),
        "tail_entries": len(counts) - len(head),
        "matches": sum(counts.values()),
        "head_matches": sum(head.values()),
    }
