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


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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
