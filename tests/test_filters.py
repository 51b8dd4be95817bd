"""Curation's record filters run as one chain in the pipeline (`entitynet.curation.filters`,
`beam_pipelines/curate.py: RunFilters`): the CLIP-score filter on embeddings joined by key, by an
absolute minimum and by the top fraction, its removals where curation's removals go. The
embeddings are planted (no model), so what must go is known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beam_pipelines import curate
from entitynet import shards
from entitynet.curation import filters
from entitynet.curation.filters import embedding_rows
from entitynet.curation.filters.clip_score import ClipScore
from entitynet.curation.plan import CurateOptions
from entitynet.errors import ConfigError
from entitynet.files import atomic_open
from entitynet.records import Embeddings, decode_for_training, text_digest, write_embeddings

DIM = 8
SPLITS = ("train", "validation", "test")


def _image_for(cos: float) -> np.ndarray:
    """A unit image vector whose cosine with the text vector e0 is `cos`."""
    v = np.zeros(DIM, np.float32)
    v[0], v[1] = cos, np.sqrt(max(0.0, 1.0 - cos * cos))
    return v


def plant(
    data_dir: Path, out: Path, score_of, skip: frozenset[str] = frozenset(), image_of=None
) -> dict[str, float]:
    """An embed output for the shards of `data_dir` whose image-text cosine is `score_of(key)`
    (every text is e0), or whose image embedding is `image_of(key)`; keys in `skip` are left out.
    Returns key -> score."""
    image_of = image_of or (lambda k: _image_for(score_of(k)))
    out.mkdir()
    (out / "embed_config.json").write_text(json.dumps({"model_digest": "planted", "dim": DIM}))
    scores = {}
    for split in SPLITS:
        for path in shards.shard_paths(data_dir, split):
            recs = [r for r in shards.read_shard(path, decode=decode_for_training) if r.key not in skip]
            image = np.stack([image_of(r.key) for r in recs]) if recs else np.zeros((0, DIM))
            text = np.zeros((len(recs), image.shape[1]), np.float32)
            text[:, 0] = 1.0
            digest = [text_digest(r.alt_texts[0]) if r.alt_texts else 0 for r in recs]
            scores.update({r.key: score_of(r.key) for r in recs})
            (out / split).mkdir(exist_ok=True)
            with atomic_open(out / split / (Path(path).name + ".npz"), "wb") as f:
                write_embeddings(
                    f,
                    Embeddings(
                        keys=np.asarray([r.key for r in recs], "S32"),
                        image=image,
                        text=text,
                        text_owner=np.arange(len(recs), dtype=np.int32),
                        text_kind=np.zeros(len(recs), np.uint8),
                        text_digest=np.asarray(digest, np.uint64),
                        model="planted",
                        source=path,
                    ),
                )
    return scores


def _removed(out: Path) -> dict[str, str]:
    rows = [
        json.loads(line)
        for f in sorted((out / "removed").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    return {r["key"]: r["reason"] for r in rows}


def _curate(data_dir, entities, out, **options) -> dict:
    opts = CurateOptions.of(t=10_000, near_dup_threshold=None, num_shards=1, **options)
    return curate.run(str(data_dir), entities, [], opts, str(out))


def test_an_off_topic_image_with_a_matching_alt_text_is_removed(tiny_dataset, tmp_path):
    data_dir, entities, recs = tiny_dataset[0], tiny_dataset[1], tiny_dataset[2]
    off_topic = sorted(r.key for r in recs)[5]  # its alt text names its entity; its image shows other things
    emb = tmp_path / "emb"
    plant(data_dir, emb, lambda k: 0.05 if k == off_topic else 0.9)
    stats = _curate(data_dir, entities, tmp_path / "cur", embeddings=str(emb), clip_score_min=0.3)
    assert stats["removed"] == {"clip_score": 1}
    assert _removed(tmp_path / "cur") == {off_topic: "clip_score"}
    assert "clip_score" in (tmp_path / "cur" / "DATACARD.md").read_text()


def test_the_top_fraction_keeps_the_best_scores(tiny_dataset, tmp_path):
    data_dir, entities = tiny_dataset[0], tiny_dataset[1]
    emb = tmp_path / "emb"
    scores = plant(data_dir, emb, lambda k: int(k[:6], 16) / 0xFFFFFF)  # a spread of distinct scores
    stats = _curate(data_dir, entities, tmp_path / "cur", embeddings=str(emb), clip_score_top=0.25)
    removed = _removed(tmp_path / "cur")
    kept = set(scores) - set(removed)
    assert set(removed.values()) == {"clip_score"}
    assert min(scores[k] for k in kept) >= max(scores[k] for k in removed)  # the best are the kept
    assert abs(len(kept) - 0.25 * len(scores)) <= 2
    assert sum(stats["kept"].values()) == len(kept)


def test_a_record_without_embeddings_goes_as_not_embedded(tiny_dataset, tmp_path):
    data_dir, entities, recs = tiny_dataset[0], tiny_dataset[1], tiny_dataset[2]
    missing = sorted(r.key for r in recs)[:2]
    plant(data_dir, tmp_path / "emb", lambda k: 0.9, skip=frozenset(missing))
    stats = _curate(
        data_dir, entities, tmp_path / "cur", embeddings=str(tmp_path / "emb"), clip_score_min=0.3
    )
    assert stats["removed"] == {"not_embedded": 2}
    assert _removed(tmp_path / "cur") == dict.fromkeys(missing, "not_embedded")


def _row(image, texts, kinds=None, digests=None) -> filters.EmbeddingRow:
    n = len(texts)
    return filters.EmbeddingRow(
        image,
        texts,
        np.zeros(n, np.uint8) if kinds is None else np.asarray(kinds, np.uint8),
        np.zeros(n, np.uint64) if digests is None else np.asarray(digests, np.uint64),
    )


def test_the_chain_is_what_the_options_turn_on():
    assert not filters.chain({})
    assert [f.name for f in filters.chain({"clip_score_min": 0.2}, "emb")] == ["clip_score"]
    both = filters.chain({"semdedup_threshold": 0.9, "clip_score_top": 0.5, "alt_text_score_min": 0.1}, "e")
    assert [f.name for f in both] == ["alt_text_score", "clip_score", "semantic_duplicate"]
    assert [f.name for f in both.group_filters] == ["semantic_duplicate"]
    with pytest.raises(ConfigError, match="--clip-score-min needs --embeddings DIR"):
        CurateOptions.of(clip_score_min=0.2)
    with pytest.raises(ConfigError, match="--clip-score-top must be a fraction within"):
        CurateOptions.of(embeddings="e", clip_score_top=1.5)
    with pytest.raises(ConfigError, match="--clip-score-min must be within -1..1, got 2"):
        CurateOptions.of(embeddings="e", clip_score_min=2.0)
    with pytest.raises(ConfigError, match="unknown curation filter option 'clip_scor_min'"):
        CurateOptions.of(embeddings="e", clip_scor_min=0.2)
    f = ClipScore(min_score=0.3)
    image, texts = _image_for(0.2), np.stack([np.eye(DIM, dtype=np.float32)[0], _image_for(0.9) * 0])
    assert f.decide(None, {"embeddings": _row(image, texts)}) == ("clip_score", "0.2000 < 0.3000")
    assert f.decide(None, {"embeddings": _row(image, texts)}, threshold=0.1) == (
        "clip_score",
        "0.2000 < 0.3000",
    )
    assert f.decide(None, {"embeddings": _row(_image_for(0.5), texts)}) is None
    assert f.decide(None, {}) == ("not_embedded", "no embedding of this record in --embeddings")


def test_every_option_is_declared_once_and_the_flags_are_made_from_the_declarations():
    import argparse

    from entitynet_cli.curate import add_curate_flags, curate_options

    p = argparse.ArgumentParser()
    add_curate_flags(p)
    args = p.parse_args(
        ["--t", "7", "--no-near-dup", "--subset-root", "Q1", "--subset-root", "Q2", "--embeddings", "e",
         "--clip-score-top", "0.3", "--alt-text-score-min", "0.1"]
    )  # fmt: skip
    opts = curate_options(args)
    assert (opts.t, opts.near_dup_threshold, opts.subset_roots, opts.balance_splits) == (
        7,
        None,
        ("Q1", "Q2"),
        ("train",),
    )
    assert dict(opts.filter_options)["clip_score_top"] == 0.3
    assert [f.name for f in opts.filters] == ["alt_text_score", "clip_score"]
    assert curate_options(p.parse_args([])) == CurateOptions()  # the flags' defaults are the fields'
    flags = [a.option_strings[0] for a in p._actions if a.option_strings][1:]
    assert len(flags) == len(set(flags))


def test_embedding_rows_give_each_record_its_own_texts(tmp_path):
    e = Embeddings(
        keys=np.asarray(["a" * 32, "b" * 32, "c" * 32], "S32"),
        image=np.eye(3, DIM, dtype=np.float16),
        text=np.eye(4, DIM, dtype=np.float16),
        text_owner=np.asarray([2, 0, 2, 2], np.int32),
        text_kind=np.zeros(4, np.uint8),
        model="m",
        source="s",
    )
    with atomic_open(tmp_path / "x.npz", "wb") as f:
        write_embeddings(f, e)
    rows = dict(embedding_rows(str(tmp_path / "x.npz")))
    assert [len(rows[k * 32].texts) for k in "abc"] == [1, 0, 3]
    assert rows["c" * 32].texts[:, 0].tolist() == [1, 0, 0]  # its texts in file order: rows 0, 2, 3


# ---------------------------------------------------------------- semantic deduplication


def _unit(seed: int, dim: int = 64) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_planted_semantic_copies_go_and_the_same_copy_is_kept_on_every_runner(tiny_dataset, tmp_path):
    data_dir, entities, recs = tiny_dataset[0], tiny_dataset[1], tiny_dataset[2]
    keys = sorted(r.key for r in recs)
    pairs = [(keys[i], keys[i + 40]) for i in range(0, 30, 6)]  # five planted copies
    copy_of = {b: a for a, b in pairs}
    base = {k: _unit(i) for i, k in enumerate(keys)}

    def image_of(k):
        if k not in copy_of:
            return base[k]
        v = base[copy_of[k]] + 0.02 * _unit(999, len(base[k]))  # the same picture, re-rendered
        return v / np.linalg.norm(v)

    emb = tmp_path / "emb"
    plant(data_dir, emb, lambda k: 1.0, image_of=image_of)
    results = []
    for n, beam_args in enumerate(([], ["--direct_num_workers=2", "--direct_running_mode=multi_threading"])):
        opts = CurateOptions.of(
            t=10_000, near_dup_threshold=None, num_shards=1, embeddings=str(emb), semdedup_threshold=0.95
        )
        curate.run(str(data_dir), entities, [], opts, str(tmp_path / f"cur{n}"), beam_args)
        rows = [
            json.loads(line)
            for f in sorted((tmp_path / f"cur{n}" / "removed").glob("*.jsonl"))
            for line in f.read_text().splitlines()
        ]
        results.append({r["key"]: (r["reason"], r["detail"]) for r in rows})
    # same size images: the smaller key of a pair is kept, the other names it
    want = {max(a, b): ("semantic_duplicate", min(a, b)) for a, b in pairs}
    assert results[0] == want and results[1] == want


def test_within_a_cluster_the_largest_image_is_kept_then_the_smallest_key():
    from entitynet.curation.semdedup import duplicates, kmeans

    v = _unit(1, 16)
    members = [("c", v, 100), ("a", v, 100), ("b", v, 400), ("d", _unit(2, 16), 100)]
    assert duplicates(members, 0.9) == {"a": "b", "c": "b"}
    with pytest.raises(ConfigError, match="--semdedup-threshold must be a cosine"):
        duplicates(members, 1.5)
    x = np.stack([_unit(i, 16) for i in range(50)])
    assert np.array_equal(kmeans(x, 4, seed=0), kmeans(x, 4, seed=0))


# ---------------------------------------------------------------- per alt text


def test_an_alt_text_that_does_not_match_its_image_is_dropped_and_the_image_kept(tiny_dataset, tmp_path):
    """One record's alt texts: one matches its image, one names something else (dropped, the record
    kept with the other); another record's only texts all miss (removed); the rest match."""
    from dataclasses import replace

    from entitynet.records import encode_image

    entities, recs = tiny_dataset[1], sorted(tiny_dataset[2], key=lambda r: r.key)
    wrong = "a teapot on a kitchen table"  # the page's other caption: not what the image shows
    two = replace(recs[0], alt_texts=(*recs[0].alt_texts, wrong))
    recs = [two, *recs[1:]]
    lost = recs[7]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shards.write_shard(data_dir / shards.shard_filename("train", 0, 1), (encode_image(r) for r in recs))
    shards.write_metadata(data_dir, {"train": [len(recs)]}, {})
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "embed_config.json").write_text(json.dumps({"model_digest": "planted", "dim": DIM}))
    image = _image_for(1.0)  # e0
    for split in SPLITS:
        for path in shards.shard_paths(data_dir, split):
            rs = list(shards.read_shard(path, decode=decode_for_training))
            texts, owner, digests = [], [], []
            for row, r in enumerate(rs):
                for t in r.alt_texts:
                    off = r.key == lost.key or t == wrong
                    texts.append(_image_for(0.05 if off else 0.9))
                    owner.append(row)
                    digests.append(text_digest(t))
            (emb / split).mkdir(exist_ok=True)
            with atomic_open(emb / split / (Path(path).name + ".npz"), "wb") as f:
                write_embeddings(
                    f,
                    Embeddings(
                        keys=np.asarray([r.key for r in rs], "S32"),
                        image=np.stack([image] * len(rs)) if rs else np.zeros((0, DIM)),
                        text=np.stack(texts) if texts else np.zeros((0, DIM)),
                        text_owner=np.asarray(owner, np.int32),
                        text_kind=np.zeros(len(texts), np.uint8),
                        text_digest=np.asarray(digests, np.uint64),
                        model="planted",
                        source=path,
                    ),
                )
    stats = _curate(data_dir, entities, tmp_path / "cur", embeddings=str(emb), alt_text_score_min=0.3)
    assert _removed(tmp_path / "cur") == {lost.key: "alt_text_score"}
    assert stats["amended"] == {"alt_text_score": {"records": 1, "dropped": 1}}
    kept = {
        r.key: r
        for s in SPLITS
        for p in shards.shard_paths(tmp_path / "cur", s)
        for r in shards.read_shard(p)
    }
    assert wrong not in kept[two.key].alt_texts and set(kept[two.key].alt_texts) == set(two.alt_texts) - {
        wrong
    }
    assert "alt_text_score" in (tmp_path / "cur" / "DATACARD.md").read_text()


# ---------------------------------------------------------------- a new filter is one module


def test_a_filter_declared_in_one_module_gets_its_flag_its_removals_and_its_card_row(
    tiny_dataset, tmp_path, monkeypatch
):
    """A filter the registry has never seen (declared here as its module would): its flag is made,
    the chain runs it without embeddings, its removals reach removed/, the stats and the card."""
    import argparse
    from dataclasses import dataclass

    from entitynet.options import Option
    from entitynet_cli.curate import add_curate_flags, curate_options

    @dataclass(frozen=True)
    class KeysBelow:  # a toy rule: what matters is that nothing else in the code knows it
        below: str
        name: str = "low_key"

        def decide(self, record, context, threshold=None):
            return (self.name, record.key[:4]) if record.key < self.below else None

    decl = filters.CurationFilter(
        "low_key",
        "records whose key sorts below a value",
        make=lambda v: KeysBelow(v["low_key_below"]) if v["low_key_below"] else None,
        options=(Option("low_key_below", "--low-key-below", "remove records whose key sorts below this"),),
        needs=(),
    )
    monkeypatch.setitem(filters._REGISTRY, "low_key", decl)
    data_dir, entities, recs = tiny_dataset[0], tiny_dataset[1], tiny_dataset[2]
    p = argparse.ArgumentParser()
    add_curate_flags(p)
    opts = curate_options(p.parse_args(["--low-key-below", "4", "--no-near-dup", "--num-shards", "1"]))
    stats = curate.run(str(data_dir), entities, [], opts.replace(t=10_000), str(tmp_path / "cur"))
    want = {r.key for r in recs if r.key < "4"}
    assert want and stats["removed"] == {"low_key": len(want)}
    assert set(_removed(tmp_path / "cur")) == want
    assert "| low_key |" in (tmp_path / "cur" / "DATACARD.md").read_text()
