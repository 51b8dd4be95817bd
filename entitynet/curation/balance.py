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
from collections.abc import Iterable, Mapping, Sequence

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


def _splits_text(splits: Sequence[str]) -> str:
    splits = list(splits)
    if len(splits) <= 1:
        return "".join(splits)
    return ", ".join(splits[:-1]) + " and " + splits[-1]


def explain(
    t: int,
    before: Mapping[str, int],
    images_before: int,
    images_after: int,
    splits: Sequence[str] = ("train",),
) -> str:
    """What balancing did, in words, for a reader who expected t to cap images: t caps the matches
    (image-entity pairs) of each entity, and an image stays while any one of its matches does, so
    with no entity above t nothing is dropped. `before`: matches per entity; `images_*`:
    the images of the balanced `splits` that reached balancing and that it kept."""
    split = _splits_text(splits)
    what = f"{split} images" if split else "images"
    lead = (
        "MetaCLIP's t caps the matches (image-entity pairs) of each entity, not the images: "
        "an image is kept when any one of its matches is kept."
    )
    if not before:
        return f"{lead} t={t:,}: no {split + ' ' if split else ''}image matched an entity, so there was nothing to balance."
    largest = max(before.values())
    capped = sum(1 for n in before.values() if n > t)
    if not capped:
        return (
            f"{lead} t={t:,} caps each entity at {t:,} matches; no entity has more than {t:,} "
            f"(largest: {largest:,}), so all {images_before:,} {what} are kept."
        )
    # not "to about t each": an image kept for another of its matches keeps this entity's match too
    return (
        f"{lead} t={t:,} capped {capped:,} of {len(before):,} entities, those with more than {t:,} "
        f"matches (largest: {largest:,}); {images_before:,} -> {images_after:,} {what}."
    )
