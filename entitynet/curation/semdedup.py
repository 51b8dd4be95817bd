"""Semantic deduplication (SemDeDup, as NeMo Curator runs it): cluster the image embeddings with
k-means, then inside each cluster keep one record of every group whose embeddings are closer than
a cosine threshold. Near-copies that a perceptual hash misses (a re-cropped product shot, the same
photo re-rendered) are caught by what the images show.

Deterministic, whatever the runner: the centroids come from a fixed sample (the records whose key
hashes lowest), k-means++ seeded; inside a cluster, members are visited largest image first, then
by key, and one is dropped when it is within the threshold of a member kept before it — the copy
kept, and the one named as what it duplicates, are decided by the data alone, as for pHash
near-duplicates (`entitynet.curation.neardup`)."""

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


def duplicates(members: list[tuple[str, np.ndarray, int]], threshold: float) -> dict[str, str]:
    """Inside one cluster of (key, unit embedding, pixels): key -> the kept key it duplicates, for
    every member within `threshold` (cosine) of one kept before it (largest image first, then key)."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--semdedup-threshold must be a cosine within (0, 1], got {threshold}")
    order = sorted(members, key=lambda m: (-m[2], m[0]))
    kept_keys: list[str] = []
    kept_vectors = np.zeros((0, len(order[0][1]) if order else 0), np.float32)
    out = {}
    for key, v, _ in order:
        v = np.asarray(v, np.float32)
        if len(kept_keys):
            sims = kept_vectors @ v
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                out[key] = kept_keys[best]
                continue
        kept_keys.append(key)
        kept_vectors = np.vstack([kept_vectors, v[None]])
    return out
