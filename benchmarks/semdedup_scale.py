"""Benchmark: semantic deduplication (SemDeDup) of a million embeddings against brute force.

    .venv/bin/python benchmarks/semdedup_scale.py            # 1M x 256, k=1000 (4-7 minutes on 2 cores)
    .venv/bin/python benchmarks/semdedup_scale.py --quick    # 50k rows, seconds

Expect: nearest cluster only, ~98% of planted copies found; with the second cluster, >= 99.9%;
both about two orders of magnitude faster than all pairs (see benchmarks/README.md).

A clustered synthetic embedding space (a common direction, super-topics, a few thousand topics of
lognormal sizes and spreads, 1% of them tight enough to hold natural near-copies), with planted
near-copies (2% of rows get 1-3 copies at cosine 0.97-0.995 against a 0.95 threshold). It runs
`entitynet.curation.semdedup` the way `beam_pipelines/curate.py`'s `SemanticDuplicates` does:
centroids by k-means over the 20,000 rows whose key hashes lowest (k = `clusters_for(n)`), every
row assigned to its nearest centroid, rows grouped by cluster (an on-disk shuffle into buckets
stands in for GroupByKey), `duplicates()` per cluster. The pool is read in chunks from a file, so
the peak memory is that of one chunk or one bucket, not of the pool. It is run twice on the same
centroids: each row in its nearest cluster only (as the graph does now), and also in its second
nearest when that is within `--margin` of the nearest (`semdedup.search_clusters`), so that
near-copies either side of a boundary meet; a row dropped in either is dropped, naming the smaller
key of the two it may be given.

Measured: time and peak resident memory per phase; recall of the planted copies (a pair counts as
found when at least one of the two is dropped: within a cluster, two kept members are never
within the threshold, so a pair with both kept fell into different clusters); false positives
(drops whose named copy is below the threshold); brute force, all pairs on a random sample
(numpy matmul in blocks), its time extrapolated (n/sample)^2 to the whole pool, and the recall
of every pair it finds; and every row's pairs across the whole pool for a few query rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from entitynet.curation import semdedup

CHUNK = 65_536  # rows read, assigned and shuffled at once
BUCKETS = 64  # shuffle files, each holding whole clusters
SAMPLE = 20_000  # rows k-means sees, as SemanticDuplicates.SAMPLE


# --- memory -----------------------------------------------------------------------------------


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM), so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Phases:
    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []

    def start(self) -> None:
        _reset_peak()
        self.t = time.perf_counter()

    def stop(self, name: str) -> float:
        took = time.perf_counter() - self.t
        self.rows.append((name, took, _peak_mib()))
        return took


# --- synthetic pool (in a child process: its memory is not the pipeline's) ---------------------


def _generate(path: str, n: int, dim: int, seed: int, topics: int, copy_cos: float) -> None:
    rng = np.random.default_rng(seed)

    def unit(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    # a common direction (embeddings live in a cone), super-topics, topics around them
    mean = unit(rng.standard_normal(dim))
    supers = unit(rng.standard_normal((64, dim)))
    topic = unit(
        0.5 * mean
        + 0.6 * supers[rng.integers(0, 64, topics)]
        + 0.8 * unit(rng.standard_normal((topics, dim)))
    ).astype(np.float32)
    spread = rng.uniform(0.8, 1.3, topics)  # within a topic, cosine ~1/(1+spread^2): 0.37-0.61
    tight = rng.random(topics) < 0.01
    spread[tight] = rng.uniform(0.15, 0.3, tight.sum())  # near-copies occur naturally: 0.92-0.98
    weight = rng.lognormal(0.0, 1.0, topics)
    of = rng.choice(topics, n, p=weight / weight.sum())
    x = np.lib.format.open_memmap(path + ".tmp.npy", "w+", np.float32, (n, dim))
    for a in range(0, n, CHUNK):
        t = of[a : a + CHUNK]
        noise = rng.standard_normal((len(t), dim), dtype=np.float32) * (spread[t] / np.sqrt(dim))[:, None]
        x[a : a + CHUNK] = unit(topic[t] + noise)
    # planted near-copies: 2% of rows get 1-3 copies, each at cosine copy_cos..0.995 to its original
    originals = rng.choice(n, n // 50, replace=False)
    copies_each = rng.integers(1, 4, len(originals))
    src = np.repeat(originals, copies_each)
    dst = rng.choice(np.setdiff1d(np.arange(n), originals), len(src), replace=False)
    cos = rng.uniform(copy_cos, 0.995, len(src))
    o = np.asarray(x[src], np.float64)
    z = rng.standard_normal((len(src), dim))
    z = unit(z - (z * o).sum(1, keepdims=True) * o)  # orthogonal to the original
    x[dst] = unit(o + np.sqrt(1.0 / cos**2 - 1.0)[:, None] * z).astype(np.float32)
    x.flush()
    with open(path, "wb") as f:  # raw rows: read back in chunks at any offset
        for a in range(0, n, CHUNK):
            f.write(np.ascontiguousarray(x[a : a + CHUNK]).tobytes())
    del x
    os.unlink(path + ".tmp.npy")
    np.save(path + ".pixels.npy", rng.integers(64 * 64, 1024 * 1024, n))
    np.save(path + ".planted.npy", np.stack([src, dst], 1))


def _rows(path: str, dim: int, start: int, count: int) -> np.ndarray:
    return np.fromfile(path, np.float32, count * dim, offset=start * dim * 4).reshape(-1, dim)


def _chunks(path: str, n: int, dim: int):
    for a in range(0, n, CHUNK):
        yield a, _rows(path, dim, a, min(CHUNK, n - a))


def _gather(path: str, n: int, dim: int, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` (sorted) read in one pass of chunks."""
    out = np.empty((len(idx), dim), np.float32)
    for a, x in _chunks(path, n, dim):
        lo, hi = np.searchsorted(idx, [a, a + len(x)])
        out[lo:hi] = x[idx[lo:hi] - a]
    return out


# --- the method, as the Beam graph runs it -----------------------------------------------------


def shuffle(path, n, dim, nearest, k, tmp) -> list[tuple[str, np.ndarray]]:
    """GroupByKey stand-in: (row, cluster) for each of a row's clusters (`nearest`, -1: none),
    written to bucket files of whole clusters; returns each bucket's file and (row, cluster) index."""
    files = [os.path.join(tmp, f"bucket{b:02d}.f32") for b in range(BUCKETS)]
    index: list[list[np.ndarray]] = [[] for _ in range(BUCKETS)]
    for f in files:
        open(f, "wb").close()
    for a, x in _chunks(path, n, dim):
        rows = np.repeat(np.arange(a, a + len(x)), nearest.shape[1])
        cluster = nearest[a : a + len(x)].reshape(-1)
        rows, cluster = rows[cluster >= 0], cluster[cluster >= 0]
        bucket = cluster * BUCKETS // k
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        for b in range(BUCKETS):
            sel = order[bounds[b] : bounds[b + 1]]
            if len(sel):
                with open(files[b], "ab") as f:
                    f.write(x[rows[sel] - a].tobytes())
                index[b].append(np.stack([rows[sel], cluster[sel]], 1))
    return [
        (files[b], np.concatenate(index[b]) if index[b] else np.zeros((0, 2), np.int64))
        for b in range(BUCKETS)
    ]


def deduplicate(buckets, dim, keys, pixels, threshold, checks):
    """`duplicates()` per cluster, one bucket in memory at a time; rep[i] = the row i is dropped for
    (-1: kept); of two decisions for a row (two clusters), the smaller key."""
    rep = np.full(len(keys), -1, np.int64)
    largest = 0
    for path, idx in buckets:
        x = np.fromfile(path, np.float32).reshape(-1, dim)
        os.unlink(path)
        order = np.argsort(idx[:, 1], kind="stable")
        bounds = np.flatnonzero(np.diff(idx[order, 1])) + 1
        for sel in np.split(order, bounds):
            if not len(sel):
                continue
            largest = max(largest, len(sel))
            members = [(keys[i], x[j], int(pixels[i])) for j, i in zip(sel, idx[sel, 0], strict=True)]
            found = semdedup.duplicates(members, threshold)
            if not found:
                continue
            t = time.perf_counter()
            row_of = {keys[i]: j for j, i in zip(sel, idx[sel, 0], strict=True)}
            d = np.fromiter((int(k, 16) for k in found), np.int64, len(found))
            r = np.fromiter((int(v, 16) for v in found.values()), np.int64, len(found))
            sims = np.einsum(
                "ij,ij->i", x[[row_of[k] for k in found]], x[[row_of[v] for v in found.values()]]
            )
            checks["below"] += int((sims < threshold).sum())
            checks["drops"] += len(found)
            fresh = rep[d] < 0
            rep[d] = np.where(fresh, r, np.minimum(rep[d], r))
            checks["seconds"] += time.perf_counter() - t
    return rep, largest


# --- brute force ------------------------------------------------------------------------------


def brute_pairs(x: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """All (i, j), i < j, rows of `x` within `threshold`: the all-pairs product in blocks."""
    out = []
    for a in range(0, len(x), block):
        s = x[a : a + block] @ x[a:].T
        i, j = np.nonzero(s >= threshold)
        keep = j > i
        out.append(np.stack([a + i[keep], a + j[keep]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def query_pairs(path, n, dim, queries: np.ndarray, qx: np.ndarray, threshold: float) -> np.ndarray:
    """Every (query row, pool row) within `threshold`, the query against the whole pool."""
    out = []
    for a, x in _chunks(path, n, dim):
        i, j = np.nonzero(qx @ x.T >= threshold)
        pairs = np.stack([queries[i], a + j], 1)
        out.append(pairs[pairs[:, 0] != pairs[:, 1]])
    return np.concatenate(out)


def resolved(pairs: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """A pair is resolved when at least one of its two rows is dropped."""
    return (rep[pairs[:, 0]] >= 0) | (rep[pairs[:, 1]] >= 0)


# --- run --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--copy-cos", type=float, default=0.97, help="planted copies' least cosine")
    ap.add_argument("--topics", type=int, default=4000)
    ap.add_argument("--clusters", type=int, default=0, help="k (0: clusters_for(n), as the graph)")
    ap.add_argument("--sample", type=int, default=20_000, help="brute force: all pairs among these rows")
    ap.add_argument("--queries", type=int, default=1000, help="brute force: these rows against all")
    ap.add_argument(
        "--margin",
        type=float,
        default=semdedup.SECOND_MARGIN,
        help="top-2: a second cluster within this cosine of the nearest (2: every row in two)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="50k rows, 400 topics, 5k sample")
    args = ap.parse_args()
    if args.quick:
        args.n, args.topics, args.sample, args.queries = 50_000, 400, 5_000, 300
    n, dim, thr = args.n, args.dim, args.threshold

    with tempfile.TemporaryDirectory(prefix="semdedup-") as tmp:
        pool = os.path.join(tmp, "pool.f32")
        t = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(
            target=_generate, args=(pool, n, dim, args.seed, args.topics, args.copy_cos)
        )
        child.start()
        child.join()
        if child.exitcode:
            print("generating the pool failed", file=sys.stderr)
            return 1
        made = time.perf_counter() - t
        pixels = np.load(pool + ".pixels.npy")
        planted = np.load(pool + ".planted.npy")
        keys = [f"{i:08x}" for i in range(n)]  # hex: a key is its row
        k = semdedup.clusters_for(n, args.clusters)
        print(
            f"semdedup: {n:,} x {dim} unit embeddings ({args.topics:,} topics), {len(planted):,} planted "
            f"copies of {len(np.unique(planted[:, 0])):,} rows at cosine >= {args.copy_cos}, threshold {thr}, "
            f"k = {k:,} clusters (generated in {made:.1f} s)"
        )
        base = _peak_mib()
        ph = Phases()

        # centroids: k-means over the rows whose key hashes lowest, in key order
        ph.start()
        ranks = np.fromiter((semdedup.sample_rank(key) for key in keys), np.uint64, n)
        sample = np.sort(np.argsort(ranks, kind="stable")[: min(SAMPLE, n)])
        sx = _gather(pool, n, dim, sample)
        ph.stop("sample (key hashes, read 20k rows)")
        ph.start()
        centroids = semdedup.kmeans(sx, k)
        ph.stop(f"k-means ({len(sx):,} rows, k={k:,})")
        del sx

        ph.start()
        nearest = np.concatenate(
            [semdedup.nearest(x, centroids, 2, args.margin) for _, x in _chunks(pool, n, dim)]
        )
        assign_s = ph.stop("assign (nearest 2 within margin, batched)")
        probe = np.arange(0, n, max(1, n // 5000))[:5000]
        px = _gather(pool, n, dim, probe)
        t = time.perf_counter()
        one = np.array([semdedup.assign(v, centroids) for v in px])
        per_record = (time.perf_counter() - t) / len(probe) * n
        same = float((one == nearest[probe, 0]).mean())
        del px

        results = {}
        for top in (1, 2):
            checks = {"below": 0, "drops": 0, "seconds": 0.0}
            ph.start()
            buckets = shuffle(pool, n, dim, nearest[:, :top], k, tmp)
            ph.stop(f"[top-{top}] shuffle into {BUCKETS} bucket files")
            ph.start()
            rep, largest = deduplicate(buckets, dim, keys, pixels, thr, checks)
            took = ph.stop(f"[top-{top}] duplicates() per cluster") - checks["seconds"]
            ph.rows[-1] = (ph.rows[-1][0], took, ph.rows[-1][2])
            results[top] = (rep, largest, checks)

        # brute force: all pairs in a random sample; a few rows against the whole pool
        rng = np.random.default_rng(args.seed + 1)
        srows = np.sort(rng.choice(n, min(args.sample, n), replace=False))
        sx = _gather(pool, n, dim, srows)
        ph.start()
        spairs = srows[brute_pairs(sx, thr)]
        brute_s = ph.stop(f"brute force, all pairs of {len(srows):,} sampled rows")
        del sx
        qrows = np.sort(rng.choice(n, min(args.queries, n), replace=False))
        qx = _gather(pool, n, dim, qrows)
        ph.start()
        qpairs = query_pairs(pool, n, dim, qrows, qx, thr)
        ph.stop(f"brute force, {len(qrows):,} rows against all {n:,}")

    print(f"  {'phase':<48} {'time':>9} {'peak RSS':>10}")
    print(f"  {'(baseline: keys, pixels, interpreter)':<48} {'':>9} {base:>7,.0f} MiB")
    for name, took, peak in ph.rows:
        print(f"  {name:<48} {took:>7.1f} s {peak:>7,.0f} MiB")
    print(
        f"  assign() one record at a time, extrapolated from {len(probe):,}: {per_record:.1f} s "
        f"(batched {assign_s:.1f} s; same cluster for {same:.2%})"
    )
    cluster_of = nearest[:, 0]
    brute_all = brute_s * (n / len(srows)) ** 2
    for top, (rep, largest, checks) in results.items():
        dropped = rep >= 0
        found = resolved(planted, rep)
        straddle = cluster_of[planted[:, 0]] != cluster_of[planted[:, 1]]
        chained = int((dropped & (rep >= 0) & dropped[np.maximum(rep, 0)]).sum())
        ours = sum(took for name, took, _ in ph.rows if "brute" not in name and not name.startswith("[top-"))
        ours += sum(took for name, took, _ in ph.rows if name.startswith(f"[top-{top}]"))
        second = (nearest[:, 1] >= 0).mean()
        how = (
            "each row in its nearest cluster, as the graph now"
            if top == 1
            else f"and in its second nearest within {args.margin} ({second:.1%} of rows)"
        )
        print(f"top-{top} ({how}):")
        print(
            f"  dropped {dropped.sum():,} rows ({dropped.mean():.2%}); largest cluster {largest:,} members; "
            f"drops naming a dropped row {chained:,}; false positives (named copy below {thr}) "
            f"{checks['below']:,} of {checks['drops']:,}"
        )
        print(
            f"  planted copies found: {found.mean():.2%} ({found.sum():,} of {len(found):,}; target 99%); "
            f"missed {int((~found).sum()):,}, of which across clusters {int((~found & straddle).sum()):,} "
            f"(pairs across clusters: {straddle.mean():.2%})"
        )
        s_ok, q_ok = resolved(spairs, rep), resolved(qpairs, rep)
        print(
            f"  brute-force pairs >= {thr} resolved: sample {s_ok.mean() if len(s_ok) else 1:.2%} of "
            f"{len(spairs):,}; queries against the pool {q_ok.mean() if len(q_ok) else 1:.2%} of {len(qpairs):,}"
        )
        print(
            f"  time: ours {ours:,.1f} s, brute force all pairs extrapolated (x{(n / len(srows)) ** 2:,.0f} "
            f"from {brute_s:.1f} s) {brute_all:,.0f} s -> ratio {brute_all / ours:,.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
