"""Shards: ArrayRecord + TFDS metadata, read back through TFDS (no TensorFlow), Grain and our reader."""

import hashlib
import io
import json
import os
from collections import Counter

import numpy as np
import pytest
from factories import record as make_record
from PIL import Image

from entitynet.errors import EntityNetError
from entitynet.records import ImageRecord, encode_image, image_key
from entitynet.shards import (
    check_directory,
    iter_records,
    shard_filename,
    shard_of,
    shard_paths,
    split_of,
    write_metadata,
    write_shard,
)


def record(i: int) -> ImageRecord:
    out = io.BytesIO()
    Image.new("RGB", (32 + i % 5, 24), (i % 255, 10, 200)).save(out, "JPEG")
    key = image_key(hashlib.sha256(str(i).encode()).hexdigest())
    return make_record(
        key,
        f"http://x/{i}.jpg",
        jpeg=out.getvalue(),
        width=32 + i % 5,
        height=24,
        alt_texts=(f"image {i}",),
        entity_ids=("Q140",),
        query_ids=("q",),
        phash=i * 7919,
        urls=(),
    )


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    records = [record(i) for i in range(60)]
    by = {}
    for r in records:
        s = split_of(r.key, {"train": 0.8, "validation": 0.2})
        by.setdefault((s, shard_of(r.key, 2)), []).append(r)
    lengths, sizes = {"train": [], "validation": []}, {"train": 0, "validation": 0}
    for split in ("train", "validation"):
        for i in range(2):
            recs = sorted(by.get((split, i), []), key=lambda r: r.key)
            n, b = write_shard(d / shard_filename(split, i, 2), (encode_image(r) for r in recs))
            lengths[split].append(n)
            sizes[split] += b
    write_metadata(d, lengths, sizes)
    return d, records, lengths


def test_tfds_reads_the_directory_without_tensorflow(shard_dir):
    import sys

    import tensorflow_datasets as tfds

    d, records, lengths = shard_dir
    builder = tfds.builder_from_directory(str(d))
    train = builder.as_data_source("train")
    assert len(train) == sum(lengths["train"]) and builder.info.name == "entitynet"
    ex = train[0]
    assert ex["image"].shape[2] == 3 and ex["image"].dtype == np.uint8
    assert ex["entity_ids"] == [b"Q140"]
    assert "tensorflow" not in sys.modules


def test_grain_and_our_reader_see_the_same_records(shard_dir):
    import grain

    from entitynet.records import decode_image

    d, records, lengths = shard_dir
    ours = list(iter_records(d, "train")) + list(iter_records(d, "validation"))
    assert len({r.key for r in records}) == len(records) == len(ours)
    assert sorted(r.key for r in ours) == sorted(r.key for r in records)
    assert {r.key: r for r in ours} == {r.key: r for r in records}
    src = grain.sources.ArrayRecordDataSource([str(p) for p in shard_paths(d, "train")])
    assert len(src) == sum(lengths["train"])
    assert {decode_image(src[i]).key for i in range(len(src))} == {r.key for r in iter_records(d, "train")}


def test_temp_files_and_other_shard_counts_are_ignored(shard_dir, tmp_path):
    d, _, _ = shard_dir
    (d / (shard_filename("train", 0, 2) + ".tmp-1-2")).write_bytes(b"half")
    (d / shard_filename("train", 0, 7)).write_bytes(b"stale")
    assert [os.path.basename(p) for p in shard_paths(d, "train")] == [
        shard_filename("train", i, 2) for i in range(2)
    ]


def test_splits_are_stable_and_proportional():
    keys = [image_key(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(20000)]
    counts = Counter(split_of(k) for k in keys)
    assert counts["train"] / 20000 == pytest.approx(0.98, abs=0.01)
    assert counts["validation"] / 20000 == pytest.approx(0.01, abs=0.005)
    assert [split_of(k) for k in keys[:50]] == [split_of(k) for k in keys[:50]]
    assert {shard_of(k, 8) for k in keys} == set(range(8))


def test_directory_checks(shard_dir, tmp_path):
    d, _, _ = shard_dir
    assert check_directory(d)["name"] == "entitynet"
    with pytest.raises(EntityNetError, match="holds no harvest shards"):
        check_directory(tmp_path)
    info = json.loads((d / "dataset_info.json").read_text())
    info["version"] = "0.9.0"
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(EntityNetError, match="schema version '0.9.0'"):
        list(iter_records(tmp_path))


def test_failed_write_leaves_no_file(tmp_path):
    def boom():
        yield encode_image(record(1))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / shard_filename("train", 0, 1), boom())
    assert list(tmp_path.iterdir()) == []


def test_the_training_decoder_reads_what_the_full_decoder_reads_for_its_fields():
    """`decode_for_training` (the Example proto read directly) against `decode_image` (TFDS) on
    records with several alt texts and entities, an empty list and non-ASCII text; garbage is a
    ValueError like the full decoder's."""
    from dataclasses import replace

    from entitynet.records import TRAINING_FIELDS, decode_for_training, decode_image

    cases = [
        record(1),
        replace(record(2), alt_texts=("Ährenfisch ï", "a red fox"), entity_ids=("Q1", "Q2", "Q3")),
        replace(record(3), alt_texts=(), entity_ids=()),
        replace(record(4), width=4000, height=3000),
    ]
    for r in cases:
        data = encode_image(r)
        fast, full = decode_for_training(data), decode_image(data)
        for name in TRAINING_FIELDS:
            assert getattr(fast, name) == getattr(full, name) == getattr(r, name), name
    for garbage in (b"", b"\x00\x01garbage", encode_image(record(5))[:40]):
        with pytest.raises(ValueError, match="not an EntityNet image record"):
            decode_for_training(garbage)
