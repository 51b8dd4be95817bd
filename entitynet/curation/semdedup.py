"""Semantic deduplication (SemDeDup, as NeMo Curator runs it): cluster the image embeddings with
k-means, then inside each cluster keep one record of every group whose embeddings are closer than
a cosine threshold. Near-copies that a perceptual hash misses (a re-cropped product shot, the same
photo re-rendered) are caught by what the images show.

Deterministic, whatever the runner: the centroids come from a fixed sample (the records whose key
hashes lowest), k-means++ seeded; inside a cluster, members are visited largest image first, then
by key, and one is dropped when it is within the threshold of a member kept before it — the copy
kept, and the one named as what it duplicates, are decided by the data alone, as for pHash
near-duplicates (`entitynet.curation.neardup`).

A near-copy can fall on the other side of a cluster boundary from its original (3.5% of planted
copies at 1M rows, k=1000: `benchmarks/semdedup_scale.py`). `nearest` also names a row's second
nearest cluster when it is almost as near (`SECOND_MARGIN`): searched in both, such pairs meet."""

from __future__ import annotations

import hashlib

import numpy as np

from entitynet.errors import ConfigError

REASON = "semantic_duplicate"


def sample_rank(key: str) -> int:
    """A record's place in the centroid sample (the lowest are taken): a hash of its key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def clusters_for(records: int, wanted: int = 0) -> int:
    """k: `wanted`, or about the square root of the record count (clusters of ~sqrt(n) members)."""
    if wanted < 0:
        raise ConfigError(f"--semdedup-clusters must be >= 0, got {wanted}")
    return wanted or max(1, round(records**0.5))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """(k, dim) unit centroids of the unit rows of `x` (spherical k-means, k-means++ seeded)."""
    x = np.asarray(x, np.float32)
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    # each row's distance to its nearest centroid so far (float64: the draw's probabilities sum to 1)
    d = np.clip(1.0 - (x @ centroids[0]).astype(np.float64), 0, None)
    for _ in range(1, k):
        p = d / d.sum() if d.sum() > 0 else None
        centroids.append(x[rng.choice(len(x), p=p)])
        d = np.minimum(d, np.clip(1.0 - (x @ centroids[-1]).astype(np.float64), 0, None))
    c = np.stack(centroids)
    for _ in range(iterations):
        labels = np.argmax(x @ c.T, axis=1)
        moved = np.stack([x[labels == j].sum(0) if np.any(labels == j) else c[j] for j in range(k)])
        moved /= np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
        if np.allclose(moved, c):
            break
        c = moved
    return c


def assign(vector: np.ndarray, centroids: np.ndarray) -> int:
    return int(np.argmax(centroids @ np.asarray(vector, np.float32)))


# a row is also searched in its second-nearest cluster when that centroid is this close to its
# nearest (cosine): 1M synthetic rows, 256-d, k=1000 (benchmarks/semdedup_scale.py): 28% of rows
# get a second cluster, and planted copies across a boundary meet 99.4% of the time, as many as
# with every row in two clusters
SECOND_MARGIN = 0.03


def nearest(
    vectors: np.ndarray, centroids: np.ndarray, n: int = 1, margin: float | None = None
) -> np.ndarray:
    """(rows, n) indices of each unit row's `n` nearest centroids, nearest first (ties: lower index);
    with `margin`, -1 in place of any whose cosine is more than `margin` below the nearest's.
    Column 0 is `assign` for a batch; the others are clusters a duplicate search also looks in, so
    that near-copies either side of a cluster boundary meet (`SECOND_MARGIN`)."""
    sims = np.atleast_2d(np.asarray(vectors, np.float32)) @ centroids.T
    rows = np.arange(len(sims))
    out = np.empty((len(sims), min(n, centroids.shape[0])), np.int64)
    first = None
    for i in range(out.shape[1]):
        out[:, i] = np.argmax(sims, axis=1)
        best = sims[rows, out[:, i]]
        if first is None:
            first = best.copy()
        elif margin is not None:
            out[first - best > margin, i] = -1
        sims[rows, out[:, i]] = -np.inf
    return out


def search_clusters(vector: np.ndarray, centroids: np.ndarray, margin: float = SECOND_MARGIN) -> list[int]:
    """The clusters one record's duplicate search looks in: its nearest (`assign`), and its second
    nearest when that is within `margin` (cosine) of the nearest."""
    return [int(j) for j in nearest(vector, centroids, 2, margin)[0] if j >= 0]


_BLOCK_CELLS = 1 << 22  # similarities held at once in `duplicates` (16 MB of float32)


def duplicates(members: list[tuple[str, np.ndarray, int]], threshold: float) -> dict[str, str]:
    """Inside one cluster of (key, unit embedding, pixels): key -> the kept key it duplicates, for
    every member within `threshold` (cosine) of one kept before it (largest image first, then key);
    of several, the most similar, then the first kept."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--semdedup-threshold must be a cosine within (0, 1], got {threshold}")
    if not members:
        return {}
    order = sorted(members, key=lambda m: (-m[2], m[0]))
    x = np.stack([np.asarray(v, np.float32) for _, v, _ in order])
    n = len(x)
    # the members kept so far, in visit order, in a matrix filled in place (no re-copying)
    kept = np.empty_like(x)
    kept_at: list[int] = []
    out = {}
    # a block of members at a time: one product against everything kept before the block, one
    # within the block; only members with a near one inside the block are decided one by one
    block = int(max(64, min(4096, _BLOCK_CELLS // n)))
    for a in range(0, n, block):
        xb = x[a : a + block]
        if kept_at:
            prev = xb @ kept[: len(kept_at)].T
            prev_best = np.argmax(prev, axis=1)
            prev_sim = prev[np.arange(len(xb)), prev_best]
        else:
            prev_best = np.zeros(len(xb), np.int64)
            prev_sim = np.full(len(xb), -np.inf, np.float32)
        within = xb @ xb.T
        near_in = np.tril(within >= threshold, -1)
        inside = near_in.any(axis=1)
        dropped = ~inside & (prev_sim >= threshold)
        kept_b = ~inside & ~dropped  # members with a near one in the block: decided below
        for r in np.flatnonzero(inside):
            cand = np.flatnonzero(near_in[r, :r] & kept_b[:r])
            if len(cand):
                sims = within[r, cand]
                j = int(np.argmax(sims))
                if sims[j] > prev_sim[r]:  # a tie goes to the one kept before the block (kept first)
                    out[order[a + r][0]] = order[a + int(cand[j])][0]
                    continue
            if prev_sim[r] >= threshold:
                dropped[r] = True
            else:
                kept_b[r] = True
        for r in np.flatnonzero(dropped):
            out[order[a + r][0]] = order[kept_at[int(prev_best[r])]][0]
        new = np.flatnonzero(kept_b)
        kept[len(kept_at) : len(kept_at) + len(new)] = xb[new]
        kept_at.extend((a + new).tolist())
    return out
