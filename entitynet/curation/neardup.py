"""Near-duplicate search over 64-bit perceptual hashes with multi-index hashing (no all-pairs loop).

Split the 64 bits into `m` bands. Two hashes within Hamming distance `k` differ in at most
`k // m` bits of at least one band (pigeonhole), so every such pair is found by looking each hash's
bands up, with every variant of up to `k // m` flipped bits, in a sorted copy of the other side's
bands; candidates are then checked on all 64 bits. Recall at the threshold is exact, not
probabilistic. `m` is chosen from the data size to balance probing cost against candidates
(for a million hashes at k=4: three bands of ~21 bits, 22 probes each).

Everything is numpy over `uint64` arrays: a million hashes take seconds and ~100 MB.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

_MAX_PAIRS_PER_STEP = 20_000_000  # candidate pairs materialised at once (memory bound)
_TABLE_BITS = 22  # bands up to this width are looked up in a dense table (32 MB) instead of by search


def as_hashes(values) -> np.ndarray:
    """A uint64 array from Python ints (or an array)."""
    return np.asarray(values, dtype=np.uint64).reshape(-1)


def hamming(a: np.ndarray, b: np.ndarray | np.uint64) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _bands(m: int) -> list[tuple[int, int]]:
    """(shift, width) of `m` bands covering 64 bits, widths as equal as possible."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = [sum(widths[:i]) for i in range(m)]
    return list(zip(shifts, widths, strict=True))


def _probes(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in itertools.combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return np.asarray(masks, dtype=np.uint64)


def choose_bands(n_query: int, n_index: int, k: int) -> int:
    """The number of bands with the least estimated work for uniformly spread hashes."""
    best, best_cost = 1, math.inf
    for m in range(1, min(k + 1, 16) + 1):
        radius, width = k // m, 64 // m
        probes = sum(math.comb(width, j) for j in range(radius + 1))
        lookups = (n_query + n_index) * m * probes
        candidates = n_query * n_index * m * probes / 2.0**width
        cost = lookups + candidates * 1.5  # measured: a candidate costs ~1.5 table lookups
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def _candidate_pairs(
    query: np.ndarray, index: np.ndarray, k: int, bands: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query positions, index positions) of pairs sharing a band up to the probe radius."""
    m = bands or choose_bands(len(query), len(index), k)
    radius = k // m
    for shift, width in _bands(m):
        mask = np.uint64((1 << width) - 1)
        qv = (query >> np.uint64(shift)) & mask
        iv = (index >> np.uint64(shift)) & mask
        order = np.argsort(iv, kind="stable")
        if width <= _TABLE_BITS:  # direct addressing: table[v] .. table[v + 1] in `order`
            table = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(iv.astype(np.int64), minlength=1 << width), out=table[1:])
        else:
            sorted_iv = iv[order]
        for probe in _probes(width, radius):
            look = qv ^ probe
            if width <= _TABLE_BITS:
                look = look.astype(np.int64)
                lo, hi = table[look], table[look + 1]
            else:
                lo = np.searchsorted(sorted_iv, look, side="left")
                hi = np.searchsorted(sorted_iv, look, side="right")
            counts = hi - lo
            hit = np.flatnonzero(counts)
            if not len(hit):
                continue
            # expand the [lo, hi) ranges in slices that bound the memory used
            cum = np.cumsum(counts[hit])
            start = 0
            while start < len(hit):
                base = cum[start - 1] if start else 0
                stop = int(np.searchsorted(cum, base + _MAX_PAIRS_PER_STEP, side="right"))
                stop = max(stop, start + 1)
                rows = hit[start:stop]
                c = counts[rows]
                qi = np.repeat(rows, c)
                offsets = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c) + np.repeat(lo[rows], c)
                yield qi, order[offsets]
                start = stop


def pairs_between(query, index, k: int, bands: int | None = None) -> np.ndarray:
    """Sorted unique (i, j) with hamming(query[i], index[j]) <= k, as an (n, 2) int64 array."""
    query, index = as_hashes(query), as_hashes(index)
    found = []
    for qi, ii in _candidate_pairs(query, index, k, bands):
        ok = hamming(query[qi], index[ii]) <= k
        found.append(np.stack([qi[ok], ii[ok]], axis=1))
    return _unique_pairs(found)


def pairs_within(hashes, k: int, bands: int | None = None) -> np.ndarray:
    """Sorted unique (i, j), i < j, with hamming(hashes[i], hashes[j]) <= k."""
    hashes = as_hashes(hashes)
    found = []
    for qi, ii in _candidate_pairs(hashes, hashes, k, bands):
        keep = qi < ii
        qi, ii = qi[keep], ii[keep]
        ok = hamming(hashes[qi], hashes[ii]) <= k
        found.append(np.stack([qi[ok], ii[ok]], axis=1))
    return _unique_pairs(found)


def _unique_pairs(found: list[np.ndarray]) -> np.ndarray:
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components over `pairs`: the representative (smallest member) of each of 0..n-1."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([find(i) for i in range(n)]) if len(pairs) else parent


def brute_force_pairs(hashes, k: int) -> np.ndarray:
    """The all-pairs answer, for tests and benchmarks on small inputs only."""
    hashes = as_hashes(hashes)
    i, j = np.triu_indices(len(hashes), 1)
    ok = hamming(hashes[i], hashes[j]) <= k
    return np.stack([i[ok], j[ok]], axis=1).astype(np.int64)


def representatives(keys: list[str], hashes, pixels, k: int) -> dict[str, str]:
    """For every record in a near-duplicate group (two or more within `k`, chained), the key of the
    group's representative: the largest image, ties to the smallest key. Records alone are absent."""
    if not len(keys):
        return {}
    pairs = pairs_within(hashes, k)
    if not len(pairs):
        return {}
    roots = clusters(len(keys), pairs)
    members: dict[int, list[int]] = {}
    for i in np.unique(pairs):
        members.setdefault(int(roots[i]), []).append(int(i))
    out = {}
    for group in members.values():
        best = min(group, key=lambda i: (-int(pixels[i]), keys[i]))
        for i in group:
            out[keys[i]] = keys[best]
    return out


# ---------------------------------------------------------------- the same search as a join (Beam)
#
# For a pipeline that cannot hold every hash in one place: each hash is sent to the buckets of its
# bands (`band_keys`: the exact band value, plus every value within the probe radius on the
# probing side), buckets are grouped by key, and the pairs within `k` are verified inside each
# bucket (`bucket_pairs`, `bucket_matches`). By the same pigeonhole argument every pair within `k`
# meets in at least one bucket, so the pairs found are exactly `pairs_within` / `pairs_between`.


_U64 = (1 << 64) - 1


def band_keys(h: int, m: int, probe: bool, k: int) -> list[tuple[int, int]]:
    """(band, value) buckets of hash `h` under `m` bands: its exact band values, and with `probe`
    also every value within radius `k // m` of them. (Hashes may arrive as signed 64-bit ints, as
    Beam's integer coder carries them: they are read modulo 2**64 everywhere here.)"""
    h = int(h) & _U64
    radius = k // m
    out: list[tuple[int, int]] = []
    for b, (shift, width) in enumerate(_bands(m)):
        v = (int(h) >> shift) & ((1 << width) - 1)
        masks = [int(x) for x in _probes(width, radius)] if probe else [0]
        out.extend((b, v ^ mask) for mask in masks)
    return out


def bucket_pairs(exact: list[tuple[str, int]], probing: list[tuple[str, int]], k: int, cap: int):
    """Pairs (a, b), a < b, of keys within `k` bits among the members of one bucket: `exact` hold
    the bucket's value in that band, `probing` reach it by a probe. Members with the same hash are
    chained (a star, not all pairs), so a bucket of a thousand blank images costs a thousand edges.
    Returns (pairs, capped): over `cap` distinct hashes, only equal hashes are linked (capped=True)."""
    by_hash: dict[int, list[str]] = {}
    for key, h in exact:
        by_hash.setdefault(int(h) & _U64, []).append(key)
    pairs: set[tuple[str, str]] = set()
    for keys in by_hash.values():
        keys = sorted(set(keys))
        pairs.update((keys[0], other) for other in keys[1:])
    heads = sorted((min(keys), h) for h, keys in by_hash.items())
    if len(heads) > cap:
        return sorted(pairs), True
    hs = np.asarray([h for _, h in heads], dtype=np.uint64)
    names = [key for key, _ in heads]
    for i in range(len(heads)):
        close = np.flatnonzero(hamming(hs[i + 1 :], hs[i]) <= k) + i + 1
        pairs.update((min(names[i], names[j]), max(names[i], names[j])) for j in close.tolist())
    for key, h in probing:
        close = np.flatnonzero(hamming(hs, np.uint64(int(h) & _U64)) <= k)
        for j in close.tolist():
            for other in by_hash[int(hs[j])]:
                if other != key:
                    pairs.add((min(key, other), max(key, other)))
    return sorted(pairs), False


def bucket_matches(
    probing: list[tuple[str, int]], index: list[tuple[int, str]], k: int
) -> list[tuple[str, int, str]]:
    """(key, distance, ref) for each probing key within `k` bits of an entry of `index` ((hash, ref)
    pairs of the bucket's evaluation images): the nearest entry, the smallest ref on a tie."""
    if not index or not probing:
        return []
    entries = sorted((int(h) & _U64, ref) for h, ref in index)
    hs = np.asarray([h for h, _ in entries], dtype=np.uint64)
    out = []
    for key, h in probing:
        d = hamming(hs, np.uint64(int(h) & _U64))
        near = np.flatnonzero(d <= k)
        if len(near):
            best = min(near, key=lambda i: (d[i], entries[i][1]))
            out.append((key, int(d[best]), entries[best][1]))
    return sorted(set(out))
