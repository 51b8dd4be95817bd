"""Curation: MetaCLIP balancing (against the published formula and a numpy implementation of it),
near-duplicate search (against brute force), decontamination, subsets, and the Beam pipeline
agreeing with the plain functions it is built from."""

import hashlib
import io
import json
import math
from collections import Counter

import numpy as np
import pytest
from factories import record
from PIL import Image

from beam_pipelines import curate
from entitynet import records, shards
from entitynet.curation import balance, evalsets, neardup, unimaged
from entitynet.curation.metadata import EntityMetadata
from entitynet.curation.plan import CurateOptions
from entitynet.curation.subsets import check_roots, entities_under
from entitynet.errors import ConfigError, EntityNetError
from entitynet.images.process import ImageOptions, perceptual_hash
from entitynet.records import Entity, encode_image

N_ENTITIES = 30
T = 40
# an entity of the graph that no harvested record is linked to or named by
GHOST = Entity(id="Q999", label="phantom", natural_type_label="animal", depth=2)


def _entities():
    out = []
    for i in range(1, N_ENTITIES + 1):
        root = "Q729" if i <= 15 else "Q756"
        out.append(
            Entity(
                id=f"Q{100 + i}",
                label=f"creature{i}",
                aliases=(f"beast number {i}",),
                lineage_ids=(f"Q{50 + i % 3}", root),
                root=root,
                natural_type=root,
                natural_type_label="animal" if root == "Q729" else "plant",
                depth=2,
            )
        )
    return out


def _jpeg(seed: int, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)).resize(size)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


def _key(n: int) -> str:
    return hashlib.sha256(f"record {n}".encode()).hexdigest()[:32]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A long-tailed synthetic harvest: entity i is found by ~400/i records; every 7th record also
    names a second entity in its alt text; planted near-duplicate pairs and evaluation-set copies."""
    entities = _entities()
    rng = np.random.default_rng(1)
    jpeg = _jpeg(0)
    recs = []
    n = 0
    for i, e in enumerate(entities, start=1):
        for _ in range(max(3, 400 // i)):
            alt = f"a photo of {e.label}" if n % 2 else "a nice photo"
            if n % 7 == 0:
                alt += f" next to beast number {(n % N_ENTITIES) + 1}"
            recs.append(
                record(
                    _key(n),
                    f"http://h/{n}.jpg",
                    jpeg=jpeg,
                    width=64,
                    height=48,
                    alt_texts=(alt,),
                    entity_ids=(e.id,),
                    phash=int(rng.integers(0, 2**63, dtype=np.uint64)) * 2 + 1,
                )
            )
            n += 1
    # near-duplicates: copies (2 bits off) of records of tail entities, under another tail entity
    tail = [r for r in recs if r.entity_ids[0] in {e.id for e in entities[-8:]}]
    dups = []
    for j, r in enumerate(tail[:6]):
        dups.append(
            record(
                _key(10_000 + j),
                f"http://copy/{j}.jpg",
                jpeg=jpeg,
                width=32,
                height=24,
                alt_texts=(f"copy {j}",),
                entity_ids=(entities[-1].id,),
                phash=r.phash ^ 0b101,
            )
        )
    # an evaluation ImageFolder, and harvested copies of three of its images (1 bit off)
    eval_dir = tmp_path_factory.mktemp("evalset")
    eval_hashes = []
    for j in range(4):
        (eval_dir / "cls").mkdir(exist_ok=True)
        data = _jpeg(100 + j, (320, 256))
        (eval_dir / "cls" / f"{j}.jpg").write_bytes(data)
        eval_hashes.append(perceptual_hash(Image.open(io.BytesIO(data)), ImageOptions()))
    contaminants = [
        record(
            _key(20_000 + j),
            f"http://leak/{j}.jpg",
            jpeg=jpeg,
            width=64,
            height=48,
            alt_texts=(f"creature{N_ENTITIES}",),
            entity_ids=(entities[-1].id,),
            phash=eval_hashes[j] ^ 1,
        )
        for j in range(3)
    ]
    all_recs = recs + dups + contaminants
    shard_dir = tmp_path_factory.mktemp("shards")
    write_harvest(shard_dir, all_recs, num_shards=3)
    return entities, all_recs, dups, tail[:6], contaminants, eval_dir, shard_dir


def write_harvest(directory, recs, num_shards):
    by = {}
    for r in recs:
        by.setdefault((shards.split_of(r.key), shards.shard_of(r.key, num_shards)), []).append(r)
    lengths = {s: [0] * num_shards for s in ("train", "validation", "test")}
    for split in lengths:
        for i in range(num_shards):
            group = sorted(by.get((split, i), []), key=lambda r: r.key)
            shards.write_shard(
                directory / shards.shard_filename(split, i, num_shards), (encode_image(r) for r in group)
            )
            lengths[split][i] = len(group)
    shards.write_metadata(directory, lengths, {})


# ---------------------------------------------------------------- balancing


def test_keep_probability_is_the_published_formula():
    assert balance.keep_probability(10, 20_000) == 1.0
    assert balance.keep_probability(20_000, 20_000) == 1.0
    assert balance.keep_probability(80_000, 20_000) == 0.25
    assert balance.record_probability(["a", "b"], {"a": 40, "b": 80}, 20) == pytest.approx(1 - 0.5 * 0.75)
    draws = [balance.draw(0, f"k{i}", "e") for i in range(20_000)]
    assert 0 <= min(draws) and max(draws) < 1 and abs(np.mean(draws) - 0.5) < 0.01
    assert balance.draw(0, "k", "e") == balance.draw(0, "k", "e") != balance.draw(1, "k", "e")


def test_balancing_matches_expectation_and_a_numpy_implementation(world):
    entities, recs, *_ = world
    meta = EntityMetadata(entities)
    entries = [meta.entries(r.alt_texts, r.entity_ids) for r in recs]
    counts = {}
    for es in entries:
        for e in es:
            counts[e] = counts.get(e, 0) + 1
    assert max(counts.values()) > 5 * T > min(counts.values())  # a long tail around t
    kept = [balance.keep(r.key, es, counts, T, seed=7) for r, es in zip(recs, entries, strict=True)]

    # the published formula in numpy: p = t / max(count, t); keep if any entry's draw < p
    names = sorted(counts)
    col = {e: j for j, e in enumerate(names)}
    c = np.array([counts[e] for e in names], dtype=np.float64)
    p = T / np.maximum(c, T)
    member = np.zeros((len(recs), len(names)), dtype=bool)
    u = np.ones((len(recs), len(names)))
    for i, (r, es) in enumerate(zip(recs, entries, strict=True)):
        for e in es:
            member[i, col[e]] = True
            u[i, col[e]] = balance.draw(7, r.key, e)
    kept_np = np.any(member & (u < p[None, :]), axis=1)
    assert kept_np.tolist() == kept

    # per entry: kept records of single-entry records ~ Binomial(count, p); check within 4 sigma
    for e in names:
        rows = [i for i, es in enumerate(entries) if es == (e,)]
        n, pe = len(rows), T / max(counts[e], T)
        got = sum(kept[i] for i in rows)
        assert abs(got - n * pe) <= 4 * math.sqrt(n * pe * (1 - pe)) + 1, (e, got, n * pe)
    # the head is cut to about t, the tail kept whole
    head = [e for e in names if counts[e] > 3 * T]
    tail = [e for e in names if counts[e] <= T]
    assert head and tail
    for e in tail:
        assert all(kept[i] for i, es in enumerate(entries) if e in es)
    # order does not matter: the draws depend on (seed, key, entry) only
    order = np.random.default_rng(3).permutation(len(recs))
    assert [balance.keep(recs[i].key, entries[i], counts, T, 7) for i in order] == [kept[i] for i in order]


def test_the_balancing_sentence_counts_matches_and_images():
    lead = (
        "MetaCLIP's t caps the matches (image-entity pairs) of each entity, not the images: "
        "an image is kept when any one of its matches is kept. "
    )
    few = {f"Q{i}": 1 + i % 23 for i in range(80)}  # 118 images, no entity above t=40
    assert balance.explain(40, few, 118, 118) == lead + (
        "t=40 caps each entity at 40 matches; no entity has more than 40 (largest: 23), "
        "so all 118 train images are kept."
    )
    many = {f"Q{i}": 60 + i if i < 12 else 3 for i in range(80)}
    assert balance.explain(40, many, 1_180, 970, ("train", "validation")) == lead + (
        "t=40 capped 12 of 80 entities, those with more than 40 matches (largest: 71); "
        "1,180 -> 970 train and validation images."
    )
    assert balance.explain(40, {}, 0, 0) == lead + (
        "t=40: no train image matched an entity, so there was nothing to balance."
    )


def test_unimaged_entities_say_why():
    ents = [
        Entity(id=f"Q{i}", label=name) for i, name in enumerate(["delta", "alpha", "beta", "gamma", "eps"])
    ]
    counts = {
        ("candidates", "Q1"): 4,  # alpha: candidates, no image
        ("candidates", "Q2"): 2,  # beta: its images all removed
        ("harvested", "Q2"): 3,
        ("removed", "Q2", "balanced_out"): 2,
        ("removed", "Q2", "near_duplicate"): 1,
        ("named", "Q2"): 1,
        ("harvested", "Q3"): 1,  # gamma: its only image removed
        ("removed", "Q3", "contaminated:ev"): 1,
        ("harvested", "Q4"): 5,  # eps: has images
        ("kept", "Q4"): 5,
    }
    rows = unimaged.unimaged([*ents, ents[0]], counts, candidates_known=True)  # delta twice: one row
    assert rows == [
        ("Q0", "delta", "no_candidates", "no candidates: no search result named it"),
        ("Q1", "alpha", "none_harvested", "4 candidate URLs named it, no harvested image is linked to it"),
        (
            "Q2",
            "beta",
            "all_removed",
            "all 3 harvested images were removed by curation (balanced_out 2, near_duplicate 1); "
            "its name occurs in the alt texts of 1 kept image",
        ),
        (
            "Q3",
            "gamma",
            "all_removed",
            "its only harvested image was removed by curation (contaminated:ev 1)",
        ),
    ]
    assert unimaged.unimaged(ents, counts, candidates_known=False)[0][2:] == (
        "not_in_input",
        "no image in the input is linked to it",
    )
    assert [r[0] for r in unimaged.unimaged(ents, counts, True, selected={"Q3", "Q4"})] == ["Q3"]
    info = unimaged.summary(rows, considered=5)
    assert info["summary"] == (
        "entities without images: 4 of 5 entities (no candidates 1, candidates but no image 1, "
        "all images removed by curation 2); each with why: unimaged_entities.tsv"
    )
    card = "\n".join(unimaged.card_lines(info, rows, shown=2))
    assert card.startswith("## Entities without images: 4\n")
    assert "| Q1 | alpha |" in card and "| Q2 |" not in card
    assert "The first 2 are shown; 2 more are in `unimaged_entities.tsv`." in card
    assert (
        unimaged.tsv_lines([("Q5", "tab\there", "no_candidates", "x")])[1] == "Q5\ttab here\tno_candidates\tx"
    )


def test_metadata_matching_is_word_delimited(world):
    entities = world[0]
    meta = EntityMetadata(entities)
    assert meta.match(["A photo of Creature1, at dusk"]) == {"Q101"}
    assert meta.match(["creature12"]) == {"Q112"}  # not creature1 inside creature12
    assert meta.match(["beast number 3 and creature4."]) == {"Q103", "Q104"}
    assert meta.entries(["nothing here"], ["Q105", "Q999"]) == ("Q105",)  # unknown ids dropped


# ---------------------------------------------------------------- near-duplicates


@pytest.mark.parametrize("k", [0, 3, 4, 7, 10])
def test_multi_index_search_equals_brute_force(k):
    rng = np.random.default_rng(k)
    h = rng.integers(0, 2**63, 3000, dtype=np.uint64) * 2
    for i in range(300):  # plant copies at every distance up to k + 2
        x = int(h[i])
        for b in rng.choice(64, i % (k + 3), replace=False):
            x ^= 1 << int(b)
        h[1500 + i] = x
    got = neardup.pairs_within(h, k)
    assert np.array_equal(got, neardup.brute_force_pairs(h, k))
    assert len(got) >= sum(1 for i in range(300) if i % (k + 3) <= k)
    between = neardup.pairs_between(h[:1500], h[1500:], k)
    brute = {(int(i), int(j)) for i, j in neardup.brute_force_pairs(h, k) if i < 1500 <= j}
    assert {(int(i), int(j) + 1500) for i, j in between} == brute


def test_representatives_pick_the_largest_image_of_each_group():
    keys = ["a", "b", "c", "d", "e"]
    far = 0xFFFF << 40
    hashes = [0b0, 0b1, 0b11, far, far | 0b1]
    pixels = [10, 30, 20, 5, 5]
    reps = neardup.representatives(keys, hashes, pixels, k=1)
    assert reps == {"a": "b", "b": "b", "c": "b", "d": "d", "e": "d"}  # chained a-b-c; ties: smallest key


# ---------------------------------------------------------------- evaluation sets and subsets


def test_eval_sets_load_from_imagefolder_and_tfds_directories(world, tmp_path):
    *_, eval_dir, shard_dir = world
    ev = evalsets.load(str(eval_dir))
    assert len(ev.hashes) == 4 and ev.unreadable == 0
    (eval_dir / "cls" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert evalsets.load(str(eval_dir)).unreadable == 1
    (eval_dir / "cls" / "broken.jpg").unlink()
    from_tfds = evalsets.load(str(shard_dir))  # a TFDS dataset directory: every split
    info = json.loads((shard_dir / "dataset_info.json").read_text())
    assert len(from_tfds.hashes) == sum(sum(map(int, s["shardLengths"])) for s in info["splits"])
    with pytest.raises(ConfigError, match="does not exist"):
        evalsets.load(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image files"):
        evalsets.load(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot read it from TFDS"):
        evalsets.load("tfds:no_such_dataset_here:test", tfds_data_dir=str(tmp_path))


def test_subsets_follow_lineage(world):
    entities = world[0]
    assert entities_under(entities, ["Q729"]) == {e.id for e in entities[:15]}
    assert entities_under(entities, ["Q51"]) == {e.id for i, e in enumerate(entities, 1) if i % 3 == 1}
    with pytest.raises(ConfigError, match="no entity has Q999"):
        check_roots(entities, ["Q999"])
    with pytest.raises(ConfigError, match="malformed subset root"):
        check_roots(entities, ["animal"])


# ---------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def curated(world, tmp_path_factory):
    entities, recs, dups, originals, contaminants, eval_dir, shard_dir = world
    out = tmp_path_factory.mktemp("curated")
    opts = CurateOptions(t=T, seed=7, num_shards=2)
    stats = curate.run(str(shard_dir), [*entities, GHOST], [evalsets.load(str(eval_dir))], opts, str(out))
    return out, stats


def test_pipeline_agrees_with_the_plain_functions(world, curated):
    entities, recs, dups, originals, contaminants, eval_dir, shard_dir = world
    out, stats = curated
    # what the pipeline should have done, step by step, with the library functions
    dirty = {c.key for c in contaminants}
    clean = [r for r in recs if r.key not in dirty]
    reps = neardup.representatives(
        [r.key for r in clean], [r.phash for r in clean], [r.width * r.height for r in clean], 4
    )
    assert len(reps) == 12 and set(reps.values()) == {r.key for r in originals}  # the larger image wins
    groups = {}
    for r in clean:
        groups.setdefault(reps.get(r.key, r.key), []).append(r)
    meta = EntityMetadata(entities)
    merged = {}
    for rep, members in groups.items():
        first = next(m for m in members if m.key == rep)
        alt = {t for m in members for t in m.alt_texts}
        ents = {e for m in members for e in m.entity_ids}
        merged[rep] = (shards.split_of(first.key), meta.entries(alt, ents), first.url)
    counts = {}
    for split, es, _ in merged.values():
        if split == "train":
            for e in es:
                counts[e] = counts.get(e, 0) + 1
    expect = {  # the draws are keyed by the representative's URL
        k: split
        for k, (split, es, url) in merged.items()
        if split != "train" or balance.keep(url, es, counts, T, 7)
    }
    got = {r.key: split for split in ("train", "validation", "test") for r in shards.iter_records(out, split)}
    assert got == expect
    assert stats["removed"]["near_duplicate"] == 6
    assert stats["contamination"] == {str(eval_dir): 3}
    assert stats["removed"]["balanced_out"] == len(merged) - len(expect)
    assert sum(stats["kept"].values()) == len(expect)
    # every removed record is in removed/*.jsonl with why: merged into which representative,
    # near which evaluation image, balanced out under which entries
    from entitynet.records import Removal, read_jsonl

    removals = [rm for name in stats["files"]["removed"] for rm in read_jsonl(out / name, Removal)]
    assert Counter(rm.reason for rm in removals) == Counter(stats["removed"])
    assert {rm.key for rm in removals} | set(got) == {r.key for r in recs}  # nothing unaccounted for
    for rm in removals:
        if rm.reason == "near_duplicate":
            assert rm.detail == reps[rm.key] and rm.detail != rm.key
        elif rm.reason.startswith("contaminated:"):
            assert rm.key in dirty and (eval_dir / rm.detail).is_file()
        elif rm.reason == "balanced_out":
            assert set(rm.detail.split(",")) == set(merged[rm.key][1])
    # the surviving originals carry their copies' texts and entities
    for r in originals:
        if r.key in got:
            rec = next(x for x in shards.iter_records(out, got[r.key]) if x.key == r.key)
            assert any(t.startswith("copy ") for t in rec.alt_texts) and entities[-1].id in rec.entity_ids
    # counts before and after, per entry, in the TSV
    rows = [line.split("\t") for line in (out / "entry_counts.tsv").read_text().splitlines()[1:]]
    assert {r[0]: int(r[2]) for r in rows} == counts
    assert all(int(r[3]) <= max(int(r[2]), 0) for r in rows)
    card = (out / "DATACARD.md").read_text()
    assert "t = 40" in card and str(eval_dir) in card
    # balancing explained in matches and images: some entities capped, the train images it dropped
    train_in = sum(1 for split, _, _ in merged.values() if split == "train")
    train_kept = sum(1 for split in expect.values() if split == "train")
    capped = sum(1 for n in counts.values() if n > T)
    largest = max(counts.values())
    explained = stats["balance"]["explained"]
    assert stats["balance"]["images"] == {"before": train_in, "after": train_kept} and train_kept < train_in
    assert explained.endswith(
        f"t=40 capped {capped} of {len(counts)} entities, those with more than 40 matches "
        f"(largest: {largest}); "
        f"{train_in:,} -> {train_kept:,} train images."
    )
    assert explained.startswith(
        "MetaCLIP's t caps the matches (image-entity pairs) of each entity, not the images"
    )
    assert explained in card
    # the graph's entity with no record: listed with why, in the stats, the file and the card
    assert stats["unimaged"]["count"] == 1 and stats["unimaged"]["of"] == N_ENTITIES + 1
    tsv = (out / "unimaged_entities.tsv").read_text().splitlines()
    assert tsv == [
        "entity\tlabel\tkind\twhy",
        "Q999\tphantom\tnot_in_input\tno image in the input is linked to it",
    ]
    assert "## Entities without images: 1" in card
    assert "| Q999 | phantom | no image in the input is linked to it |" in card
    assert {p.name for p in (out / "plots").iterdir()} >= {
        "entry_counts.png",
        "removed.png",
        "natural_types.png",
    }


@pytest.mark.slow
def test_same_result_from_other_sharding_and_as_a_key_subset(world, curated, tmp_path):
    entities, recs, *_, eval_dir, shard_dir = world
    out, _ = curated
    reshard = tmp_path / "reshard"
    reshard.mkdir()
    write_harvest(reshard, list(reversed(recs)), num_shards=5)
    opts = CurateOptions(t=T, seed=7, output="subset")
    stats = curate.run(
        str(reshard),
        entities,
        [evalsets.load(str(eval_dir))],
        opts,
        str(tmp_path / "subset"),
        ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
    )
    subset = np.load(tmp_path / "subset" / "subset.npz")
    for split in ("train", "validation", "test"):
        want = records.encode_subset({split: [r.key for r in shards.iter_records(out, split)]})[split]
        got_pairs, want_pairs = {tuple(x) for x in subset[split].tolist()}, {tuple(x) for x in want.tolist()}
        assert np.array_equal(subset[split], want), (
            split,
            len(got_pairs),
            len(want_pairs),
            stats["removed"],
            _["removed"],
        )
        pairs = [(int(h), int(lo)) for h, lo in subset[split]]
        assert pairs == sorted(set(pairs))  # sorted, unique
    assert not list((tmp_path / "subset").glob("*.array_record*")) and stats["output"] == "subset"
    assert int(subset["_version"]) == records.SCHEMA_VERSION
    assert set(records.read_subset(tmp_path / "subset" / "subset.npz", "train")) == {
        r.key for r in shards.iter_records(out, "train")
    }


def test_subset_roots_in_the_pipeline(world, tmp_path):
    entities, *_, shard_dir = world
    opts = CurateOptions(t=10_000, subset_roots=("Q756",), near_dup_threshold=None)
    stats = curate.run(str(shard_dir), entities, [], opts, str(tmp_path / "plants"))
    plants = {e.id for e in entities[15:]}
    kept = [
        r
        for split in ("train", "validation", "test")
        for r in shards.iter_records(tmp_path / "plants", split)
    ]
    assert kept and all(plants & set(r.entity_ids) for r in kept)
    assert stats["removed"]["outside_subset"] > 0 and "balanced_out" not in stats["removed"]
    # nothing above t: every train image that reached balancing is kept, and the sentence says why
    largest = max(
        int(line.split("\t")[2])
        for line in (tmp_path / "plants" / "entry_counts.tsv").read_text().splitlines()[1:]
    )
    train = stats["kept"]["train"]
    assert stats["balance"]["images"] == {"before": train, "after": train}
    assert stats["balance"]["explained"].endswith(
        f"t=10,000 caps each entity at 10,000 matches; no entity has more than 10,000 "
        f"(largest: {largest}), so all {train} train images are kept."
    )
    assert stats["balance"]["explained"] in (tmp_path / "plants" / "DATACARD.md").read_text()
    # every plant has an image; the animals outside the subset are not counted
    assert stats["unimaged"]["count"] == 0 and stats["unimaged"]["of"] == 15
    assert "## Entities without images: 0" in (tmp_path / "plants" / "DATACARD.md").read_text()


def test_bad_curation_input(world, tmp_path):
    entities, *_, shard_dir = world
    opts = CurateOptions()
    (tmp_path / "empty").mkdir()
    with pytest.raises(EntityNetError, match="holds no harvest shards"):
        curate.run(str(tmp_path / "empty"), entities, [], opts, str(tmp_path / "o1"))
    other = tmp_path / "other"
    other.mkdir()
    info = json.loads((shard_dir / "dataset_info.json").read_text())
    (other / "dataset_info.json").write_text(json.dumps({**info, "version": "0.0.1"}))
    with pytest.raises(EntityNetError, match="schema version '0.0.1'"):
        curate.run(str(other), entities, [], opts, str(tmp_path / "o2"))
    with pytest.raises(EntityNetError, match="no entities"):
        curate.run(str(shard_dir), [], [], opts, str(tmp_path / "o3"))
    with pytest.raises(ConfigError, match="--t must be"):
        CurateOptions(t=0)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def _beam_groups(items, k, eval_sets=(), decontam_k=4):
    import functools

    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    from beam_pipelines.neardup import Contaminated, NearDupGroups

    _COLLECTED.clear()
    keep = functools.partial(functools.partial, _collect)

    from beam_pipelines.common import make_pipeline

    with make_pipeline([]) as p:
        pc = p | beam.Create([(key, h - (1 << 64) if h >= 1 << 63 else h, px) for key, h, px in items])
        groups = pc | NearDupGroups(k, neardup.choose_bands(len(items), len(items), k))
        assert_that(groups["representative"], keep("reps"), label="Reps")
        assert_that(groups["capped"], keep("capped"), label="Capped")
        assert_that(groups["unconverged"], keep("unconverged"), label="Unconverged")
        if eval_sets:
            dirty = pc | beam.Map(lambda t: (t[0], t[1])) | Contaminated(eval_sets, decontam_k, 5)
            assert_that(dirty, keep("dirty"), label="Dirty")
    return dict(_COLLECTED)


_COLLECTED: dict = {}


def _collect(name, actual):  # module level: the runner pickles the matcher by reference
    _COLLECTED[name] = sorted(actual)


@pytest.mark.slow
def test_beam_near_duplicate_groups_equal_the_in_memory_ones():
    """Planted groups, a chain of 40 images each 2 bits from the next (diameter 39: the label
    propagation must converge), 300 identical blank images, and noise."""
    rng = np.random.default_rng(3)
    items = []
    for i in range(600):  # noise
        items.append(
            (
                f"n{i:04d}",
                int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)),
                int(rng.integers(1, 10**6)),
            )
        )
    base = int(rng.integers(0, 2**63))
    h = base
    for i in range(40):  # a chain: consecutive within 2 bits, the ends far apart
        items.append((f"c{i:04d}", h, 1000 + i))
        h ^= 1 << (2 * i % 64) | 1 << ((2 * i + 1) % 64)
    for i in range(300):  # blank images: one hash
        items.append((f"b{i:04d}", 0xFFFF_0000_FFFF_0000, 500))
    for g in range(30):  # small planted groups
        h = int(rng.integers(0, 2**63))
        for j in range(3):
            items.append(
                (f"g{g:02d}{j}", h ^ (1 << int(rng.integers(0, 64))) if j else h, int(rng.integers(1, 10**6)))
            )
    keys = [k for k, _, _ in items]
    want = neardup.representatives(keys, [h for _, h, _ in items], [px for _, _, px in items], 4)
    got = _beam_groups(items, 4)
    assert dict(got["reps"]) == want
    assert len({r for r in want.values()}) >= 32 and got["capped"] == [] and got["unconverged"] == [0]


def test_beam_contamination_equals_the_in_memory_join():
    rng = np.random.default_rng(4)
    items = [(f"r{i:04d}", int(rng.integers(0, 2**63)) * 2 + 1, 10) for i in range(500)]
    ev_hashes = [h ^ 0b101 for _, h, _ in items[::17]] + [int(rng.integers(0, 2**63)) for _ in range(50)]
    ev = evalsets.EvalSet("ev", np.asarray(ev_hashes, dtype=np.uint64))
    want = evalsets.contaminated(
        [k for k, _, _ in items], neardup.as_hashes([h for _, h, _ in items]), [ev], 4
    )
    got = _beam_groups(items, 4, [ev])
    assert sorted((k, n) for k, (n, _) in got["dirty"]) == sorted(
        (k, n) for k, names in want.items() for n in names
    )
    assert len(want) == len(items[::17])
    # each record names the evaluation image it is near: the i-th planted copy is the image of item 17i
    assert all(k == items[17 * int(ref)][0] for k, (_, ref) in got["dirty"])


def test_an_oversized_bucket_is_capped_and_reported(monkeypatch):
    from beam_pipelines import neardup as beam_neardup

    monkeypatch.setattr(beam_neardup, "BUCKET_CAP", 5)
    # 12 distinct hashes sharing their low bits (one band value), two of them also exact copies
    items = [(f"x{i:02d}", (i << 40) | 0xABC, 1) for i in range(12)] + [("x99", (3 << 40) | 0xABC, 1)]
    got = _beam_groups(items, 4)
    assert got["capped"] and dict(got["reps"]) == {"x03": "x03", "x99": "x03"}
