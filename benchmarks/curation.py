"""Benchmark: curation's two hot spots, each against the naive way.

    .venv/bin/python benchmarks/curation.py
    .venv/bin/python benchmarks/curation.py --texts 100000 --entries 50000 --hashes 1000000

1. Metadata matching, MetaCLIP-style (space-delimited substrings after punctuation spacing): our
   Aho-Corasick automaton (`entitynet.curation.metadata`) against the per-entry loop
   (`" entry " in text` for every entry), on synthetic alt texts and entity names. The loop is timed
   on a sample of the texts (it would take hours on all) and both give the same matches there.
2. Near-duplicates over 64-bit perceptual hashes: multi-index hashing (`entitynet.curation.neardup`)
   on random hashes plus planted near-copies at every distance up to the threshold: time, peak
   memory and recall of the planted pairs (target 100%); the all-pairs loop's time is extrapolated
   from a sample.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from entitynet.curation import neardup
from entitynet.curation.metadata import EntityMetadata
from entitynet.records import Entity
from entitynet.text.matching import normalise

SYLLABLES = "ka lo mi ra tu ne si po da ve li mo ru sa te bi no ga zu fe".split()
FILLER = "a photo of the in on with and my at best new free image picture view close up".split()


def names(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        words = [
            "".join(rng.choice(SYLLABLES, int(rng.integers(2, 4)))) for _ in range(int(rng.integers(1, 4)))
        ]
        out.add(" ".join(words))
    return sorted(out)


def texts(rng: np.random.Generator, n: int, pool: list[str]) -> list[str]:
    out = []
    for _ in range(n):
        words = [FILLER[i] for i in rng.integers(0, len(FILLER), int(rng.integers(4, 12)))]
        for i in rng.integers(0, len(pool), int(rng.integers(0, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), pool[i] + ("", ",", ".")[int(rng.integers(3))])
        out.append(" ".join(words).capitalize())
    return out


def bench_matching(n_texts: int, n_entries: int, naive_sample: int) -> None:
    rng = np.random.default_rng(0)
    entry_names = names(rng, n_entries)
    entities = [Entity(id=f"Q{i + 1}", label=name) for i, name in enumerate(entry_names)]
    corpus = texts(rng, n_texts, entry_names)
    t = time.perf_counter()
    meta = EntityMetadata(entities)
    build = time.perf_counter() - t
    t = time.perf_counter()
    found = [meta.match([x]) for x in corpus]
    ours = time.perf_counter() - t
    padded = [(e.id, normalise(e.label)) for e in entities]
    t = time.perf_counter()
    naive = []
    for x in corpus[:naive_sample]:
        nx = normalise(x)
        naive.append({eid for eid, p in padded if p in nx})
    loop = time.perf_counter() - t
    assert naive == found[:naive_sample], "the automaton and the loop disagree"
    per_text = sum(map(len, found)) / len(found)
    ours_rate, loop_rate = n_texts / ours, naive_sample / loop
    print(f"matching: {n_texts:,} alt texts against {n_entries:,} entries ({per_text:.2f} matches per text)")
    print(f"  automaton   {ours_rate:>12,.0f} texts/s  ({ours:.2f} s, + {build:.2f} s to build it)")
    print(f"  naive loop  {loop_rate:>12,.0f} texts/s  (timed on {naive_sample:,} texts; same matches)")
    print(f"  ratio automaton/loop: {ours_rate / loop_rate:,.0f}x")


def bench_neardup(n: int, planted: int, k: int) -> None:
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, n, dtype=np.uint64
    )
    src = rng.choice(n, planted, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), planted, replace=False)
    for s, d, i in zip(src, dst, range(planted), strict=True):
        x = int(hashes[s])
        for b in rng.choice(64, i % (k + 1), replace=False):  # every distance 0..k
            x ^= 1 << int(b)
        hashes[d] = x
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t = time.perf_counter()
    pairs = neardup.pairs_within(hashes, k)
    took = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = {(int(a), int(b)) for a, b in pairs}
    want = {(int(min(s, d)), int(max(s, d))) for s, d in zip(src, dst, strict=True)}
    recall = len(want & found) / len(want)
    # the all-pairs loop, vectorised per row, timed on a sample of rows
    rows = 200
    t = time.perf_counter()
    for i in range(rows):
        np.flatnonzero(neardup.hamming(hashes[i + 1 :], hashes[i]) <= k)
    brute = (time.perf_counter() - t) / rows * n / 2  # rows shrink linearly: half the average
    m = neardup.choose_bands(n, n, k)
    print(
        f"near-duplicates: {n:,} hashes with {planted:,} planted near-copies (distances 0..{k}), threshold {k}"
    )
    print(
        f"  multi-index ({m} bands)  {took:8.2f} s, peak numpy memory {peak / 2**20:,.0f} MiB "
        f"(max RSS {max(rss, rss0) / 1024:,.0f} MiB), {len(pairs):,} pairs"
    )
    print(f"  recall of planted pairs: {recall:.2%} (target 100%)")
    print(
        f"  all-pairs loop (numpy per row, extrapolated from {rows} rows): {brute:,.0f} s "
        f"-> ratio {brute / took:,.0f}x"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--entries", type=int, default=50_000)
    ap.add_argument("--naive-sample", type=int, default=300)
    ap.add_argument("--hashes", type=int, default=1_000_000)
    ap.add_argument("--planted", type=int, default=10_000)
    ap.add_argument("--threshold", type=int, default=4)
    args = ap.parse_args()
    bench_matching(args.texts, args.entries, args.naive_sample)
    bench_neardup(args.hashes, args.planted, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
