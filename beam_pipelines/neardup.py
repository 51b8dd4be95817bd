"""Near-duplicate groups and evaluation-set contamination as Beam joins, never a global list.

    hashes ─► band buckets (multi-index hashing: exact band values, probe variants)
           ─► GroupByKey(band, value) ─► pairs within k bits (equal hashes chained; an oversized
              bucket links equal hashes only, and is counted) ─► Distinct
           ─► connected components: rounds of min-label propagation with pointer jumping
           ─► representative per component (largest image, then smallest key) by a combiner
           ─► (key, representative)

Contamination joins the records' buckets with the evaluation sets' hashes put in the same
buckets (`Contaminated`). Both give exactly what `entitynet.curation.neardup.representatives` and
`entitynet.curation.evalsets.contaminated` give in memory (tests/test_curation.py compares them);
each worker holds one bucket, one node's neighbours or one component's label at a time.
"""

from __future__ import annotations

import json

import apache_beam as beam

from entitynet.curation import neardup
from entitynet.storage import STORE

BUCKET_CAP = 5_000  # distinct hashes compared pairwise in one bucket; above, equal hashes only
ROUNDS = 8  # propagation + jump rounds; convergence is checked and reported (unconverged_edges)


def _emit_buckets(item, m: int, k: int):
    key, h = item[0], item[1]
    for bucket in neardup.band_keys(h, m, False, k):
        yield bucket, ("E", key, h)
    for bucket in neardup.band_keys(h, m, True, k):
        yield bucket, ("P", key, h)


class NearDupGroups(beam.PTransform):
    """(key, phash, pixels) -> (key, representative key) for every record in a group of two or
    more within `k` bits (chained); also a "capped" output counting oversized buckets."""

    def __init__(self, k: int, bands: int, label: str = "NearDup"):
        super().__init__(label)
        self.k, self.bands = k, bands

    def expand(self, items):
        k, m = self.k, self.bands

        def pairs_of(kv):
            _, members = kv
            exact = [(key, h) for kind, key, h in members if kind == "E"]
            probing = [(key, h) for kind, key, h in members if kind == "P"]
            pairs, capped = neardup.bucket_pairs(exact, probing, k, BUCKET_CAP)
            if capped:
                yield beam.pvalue.TaggedOutput("capped", len(exact))
            yield from pairs

        found = (
            items
            | "Buckets" >> beam.FlatMap(_emit_buckets, m, k)
            | "ByBucket" >> beam.GroupByKey()
            | "Pairs" >> beam.FlatMap(pairs_of).with_outputs("capped", main="pairs")
        )
        edges = found.pairs | "DistinctPairs" >> beam.Distinct()
        labels = components(edges)
        pixels = items | "PixelsOf" >> beam.Map(lambda kph: (kph[0], kph[2]))
        member_rank = (
            {"label": labels, "pixels": pixels}
            | "JoinPixels" >> beam.CoGroupByKey()
            | "Ranked" >> beam.FlatMap(_ranked)
        )
        reps = member_rank | "Best" >> beam.CombinePerKey(min)  # (label, (-pixels, key))
        members = member_rank | "MemberOf" >> beam.MapTuple(lambda label, rank: (label, rank[1]))
        out = (
            {"rep": reps, "member": members}
            | "JoinReps" >> beam.CoGroupByKey()
            | "RepOfMember" >> beam.FlatMap(_rep_of_members)
        )
        return {"representative": out, "capped": found.capped, "unconverged": unconverged(edges, labels)}


def _ranked(kv):
    key, joined = kv
    if joined["label"]:
        (label,) = joined["label"]
        (pixels,) = joined["pixels"] or [0]
        yield label, (-int(pixels), key)


def _rep_of_members(kv):
    _, joined = kv
    ((_, rep),) = joined["rep"]
    for key in joined["member"]:
        yield key, rep


def components(edges):
    """(a, b) edges -> (node, label): the smallest node of its connected component. Min-label
    propagation over the adjacency, each round followed by a pointer jump (a node takes its
    label's label), so a chain of length L converges in about log2(L) rounds."""
    both = edges | "BothWays" >> beam.FlatMap(lambda ab: [ab, (ab[1], ab[0])])
    adjacency = both | "Adjacency" >> beam.GroupByKey()
    labels = adjacency | "Label0" >> beam.Map(lambda kv: (kv[0], min(kv[0], *kv[1])))
    for r in range(ROUNDS):
        labels = (
            {"adj": adjacency, "label": labels}
            | f"Join{r}" >> beam.CoGroupByKey()
            | f"Spread{r}" >> beam.FlatMap(_spread)
            | f"Min{r}" >> beam.CombinePerKey(min)
        )
        labels = (
            {
                "members": labels | f"ByLabel{r}" >> beam.MapTuple(lambda node, label: (label, node)),
                "label": labels,
            }
            | f"JoinLabel{r}" >> beam.CoGroupByKey()
            | f"Jump{r}" >> beam.FlatMap(_jump)
        )
    return labels


def unconverged(edges, labels):
    """The edges whose two ends ended with different labels (0 when every component converged)."""
    keyed = edges | "EdgeByA" >> beam.Map(lambda ab: (ab[0], ab[1]))
    with_a = (
        {"edge": keyed, "label": labels}
        | "JoinA" >> beam.CoGroupByKey()
        | "LabelA" >> beam.FlatMap(lambda kv: [(b, kv[1]["label"][0]) for b in kv[1]["edge"]])
    )
    return (
        {"a": with_a, "label": labels}
        | "JoinB" >> beam.CoGroupByKey()
        | "Differ" >> beam.FlatMap(lambda kv: [1 for la in kv[1]["a"] if la != kv[1]["label"][0]])
        | "CountDiffer" >> beam.CombineGlobally(sum)
    )


def _spread(kv):
    node, joined = kv
    (label,) = joined["label"]
    yield node, label
    for neighbours in joined["adj"]:
        for n in neighbours:
            yield n, label


def _jump(kv):
    label, joined = kv
    own = joined["label"]
    better = min(label, own[0]) if own else label
    for node in joined["members"]:
        yield node, better


def eval_index_lines(eval_sets):
    """The evaluation sets' images as JSON lines [set name, phash, image ref]: the file `Contaminated`
    reads (the driver writes it; the hashes never go into the job graph)."""
    for ev in eval_sets:
        for i, h in enumerate(ev.hashes.tolist()):
            yield json.dumps([ev.name, int(h), ev.ref(i)], ensure_ascii=False)


def _eval_image(line: str | bytes) -> tuple[str, int, str]:
    """A line of the index -> (name, phash as a signed 64-bit int, ref): Beam's integer coder
    carries no larger (`_eval_buckets` reads it mod 2**64)."""
    name, h, ref = json.loads(line)
    return name, h - (1 << 64) if h >= 1 << 63 else h, ref


def _eval_buckets(image, m: int, k: int):
    """(name, signed phash, ref) of an evaluation image -> (bucket, ("V", name, (signed phash, ref)))
    for each bucket its hash sits in exactly."""
    name, signed, ref = image
    for bucket in neardup.band_keys(signed % (1 << 64), m, False, k):
        yield bucket, ("V", name, (signed, ref))


def _read_eval_index(path: str):
    with STORE.open(path) as f:
        for line in f:
            if line.strip():
                yield _eval_image(line)


class Contaminated(beam.PTransform):
    """(key, phash) of the records -> (key, (evaluation set name, image ref)) for each set holding an
    image within `k` bits of it (the nearest such image of the set): the records probe the buckets
    where the sets' hashes sit exactly.

    `eval_sets`: the path of the evaluation images' index (`eval_index_lines`), read by a worker;
    EvalSets in memory (small ones, in tests) go into the graph as they are."""

    def __init__(self, eval_sets, k: int, bands: int):
        super().__init__("Contaminated")
        self.eval_sets, self.k, self.bands = eval_sets, k, bands

    def expand(self, items):
        k, m = self.k, self.bands
        probing = items | "ProbeBuckets" >> beam.FlatMap(
            lambda kh: [(b, ("P", kh[0], kh[1])) for b in neardup.band_keys(kh[1], m, True, k)]
        )
        if isinstance(self.eval_sets, str):
            images = (
                items.pipeline
                | "EvalIndex" >> beam.Create([self.eval_sets])
                | "EvalImages" >> beam.FlatMap(_read_eval_index)
            )
        else:
            images = items.pipeline | "EvalImages" >> beam.Create(
                [_eval_image(line) for line in eval_index_lines(self.eval_sets)]
            )
        sets = images | "EvalBuckets" >> beam.FlatMap(_eval_buckets, m, k)

        def hits(kv):
            _, members = kv
            probes = [(key, h) for kind, key, h in members if kind == "P"]
            by_set: dict[str, list[tuple[int, str]]] = {}
            for kind, name, entry in members:
                if kind == "V":
                    by_set.setdefault(name, []).append(entry)
            for name, entries in by_set.items():
                for key, dist, ref in neardup.bucket_matches(probes, entries, k):
                    yield (key, name), (dist, ref)

        # one image per (record, set): a record in several buckets keeps the nearest, then smallest ref
        return (
            (probing, sets)
            | "AllBuckets" >> beam.Flatten()
            | "ByEvalBucket" >> beam.GroupByKey()
            | "Hits" >> beam.FlatMap(hits)
            | "OnePerSet" >> beam.CombinePerKey(min)
            | "KeyOfHit" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1][1])))
        )
