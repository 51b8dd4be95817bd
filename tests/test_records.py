import json

import pytest

from entitynet.errors import EntityNetError
from entitynet.records import (
    SCHEMA_VERSION,
    Attribute,
    Entity,
    Query,
    from_json,
    query_id,
    read_jsonl,
    to_json,
    write_jsonl,
)


def lion() -> Entity:
    return Entity(
        id="Q140",
        label="lion",
        description="big cat",
        aliases=("Panthera leo",),
        sitelinks=230,
        parents=("Q1",),
        lineage=("Panthera", "animal"),
        lineage_ids=("Q1", "Q729"),
        root="Q729",
        depth=2,
        natural_type="Q7377",
        natural_type_label="mammal",
        taxon_names=("Panthera leo",),
        common_names=("African lion",),
        rank="species",
        attributes=(Attribute("P462", "golden", "Q9"),),
        kind="taxon",
    )


def test_entity_and_query_roundtrip(tmp_path):
    q = Query(id=query_id("noun", "lion"), text="lion", kind="noun", entity_ids=("Q140",), or_terms=("cat",))
    path = tmp_path / "e.jsonl"
    assert write_jsonl(path, [lion(), lion()]) == 2
    assert list(read_jsonl(path, Entity)) == [lion(), lion()]
    assert from_json(Query, to_json(q)) == q
    assert json.loads(to_json(q))["v"] == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.tmp-*"))


def test_synonyms_put_label_first_and_drop_case_duplicates():
    e = Entity(
        id="Q1",
        label="Lion",
        aliases=("lion", "Panthera leo"),
        common_names=("African lion",),
        taxon_names=("panthera leo",),
    )
    assert e.synonyms() == ["Lion", "Panthera leo", "African lion"]


def test_query_id_is_stable_and_normalised():
    assert query_id("noun", "Red  Fox") == query_id("noun", "red fox")
    assert query_id("noun", "red fox") != query_id("alias", "red fox")
    assert len(query_id("noun", "x")) == 16


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "entities.jsonl"
    path.write_text(
        to_json(lion()) + "\n" + '{"v": ' + str(SCHEMA_VERSION) + ', "id": "Q2", "colour": "red"}\n'
    )
    with pytest.raises(EntityNetError, match=r"entities.jsonl:2: not a valid Entity"):
        list(read_jsonl(path, Entity))


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "entities.jsonl"
    d = json.loads(to_json(lion()))
    d["v"] = 99
    path.write_text(json.dumps(d) + "\n")
    with pytest.raises(EntityNetError, match="schema version 99"):
        list(read_jsonl(path, Entity))


def test_query_id_does_not_depend_on_the_process():
    import subprocess
    import sys

    code = "from entitynet.records import query_id; print(query_id('noun', 'red fox'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == query_id("noun", "red fox")


def test_image_record_roundtrip_and_validation():
    from entitynet.records import ImageRecord, decode_image, encode_image, image_key

    digest = "ab" * 32
    rec = ImageRecord(
        key=image_key(digest),
        jpeg=b"\xff\xd8\xff\xe0jpeg",
        width=341,
        height=256,
        url="http://a/x.jpg",
        page_url="http://a/",
        alt_texts=("a lion", "Panthera leo"),
        query_ids=("q1",),
        entity_ids=("Q140",),
        sha256=digest,
        phash=2**64 - 1,
        urls=("http://a/x.jpg", "http://b/x.jpg"),
    )
    data = encode_image(rec)
    assert decode_image(data) == rec and rec.key == "ab" * 16
    small = ImageRecord(key="k", jpeg=b"j", width=1, height=2, url="u", phash=5)
    assert decode_image(encode_image(small)) == small
    with pytest.raises(ValueError, match="not an EntityNet image record"):
        decode_image(b"\x00garbage")


def test_the_fast_record_decoder_equals_tfds_decoder():
    """`decode_image` reads the Example proto itself; TFDS's decoder of the same features is the
    reference: every field, unicode, the high bit of the hash, empty lists, negative ranks."""
    from entitynet.records import (
        EntityLink,
        ImageRecord,
        Provenance,
        decode_image,
        decode_image_tfds,
        encode_image,
    )

    full = ImageRecord(
        key="cd" * 16,
        jpeg=bytes(range(256)) * 3,
        width=7,
        height=9,
        url="http://a/ä.jpg",
        page_url="http://a/p",
        alt_texts=("Fuchs 🦊", "", "red fox"),
        query_ids=("q1", "q2"),
        entity_ids=("Q8332",),
        sha256="ef" * 32,
        phash=2**63 + 5,
        urls=("http://a/ä.jpg",),
        query_ranks=(-1, 7),
        links=(EntityLink("Q8332", ("noun", "alias"), 3, True, "alt_text", False, True),),
        license="CC-BY-SA-4.0",
        license_url="https://creativecommons.org/licenses/by-sa/4.0/",
        attribution='Jörg, "the" photographer',
        provenance=(Provenance("gbif", "http://a/ä.jpg", "http://g/1", "CC-BY-SA-4.0", "", "Jörg"),),
        id_entities=("Q8332",),
    )
    for rec in (full, ImageRecord(key="k", jpeg=b"j", width=1, height=2, url="u")):
        data = encode_image(rec)
        assert decode_image(data) == decode_image_tfds(data) == rec
    for bad in (b"", b"\x00garbage", encode_image(full)[:-5]):
        for decode in (decode_image, decode_image_tfds):
            with pytest.raises(ValueError, match="not an EntityNet image record"):
                decode(bad)


# ---------------------------------------------------------------- curation subsets


def _keys(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    keys = [f"{rng.getrandbits(128):032x}" for _ in range(n)]
    # keys that share their first half (the binary search must look at both) and the extremes
    return [*keys, "ab" * 8 + "00" * 8, "ab" * 8 + "ff" * 8, "0" * 32, "f" * 32]


def test_a_subset_is_its_sorted_key_array_searched_and_pickled_as_its_path(tmp_path):
    """`key in subset` over the stored (hi, lo) array: every kept key found, no other key, nothing
    that is not a key; iterating gives the keys in order. A local file's split is memory-mapped
    and pickles as its path and split (what a Grain worker receives), not as the keys."""
    import pickle

    import numpy as np

    from entitynet.records import Subset, encode_subset, read_subset

    keys, others = _keys(3000, 1), _keys(3000, 2)[:-4]
    path = tmp_path / "subset.npz"
    np.savez(path, **encode_subset({"train": keys, "test": []}))
    subset = read_subset(path, "train")
    assert isinstance(subset, Subset) and isinstance(subset._pairs, np.memmap)
    assert len(subset) == len(keys) and all(k in subset for k in keys)
    assert not any(k in subset for k in others)
    assert all(bad not in subset for bad in ("", "ab" * 8, "g" * 32, "ab" * 8 + "ff" * 7 + "fe", None, 7))
    assert list(subset) == sorted(keys)
    data = pickle.dumps(subset)
    assert len(data) < 500  # the path, not 16 bytes a key
    again = pickle.loads(data)
    assert again._pairs is None and keys[0] in again and set(again) == set(keys)  # mapped on first use
    empty = read_subset(path, "test")
    assert len(empty) == 0 and keys[0] not in empty and list(empty) == []


def test_a_subset_as_curate_streams_it_compressed_or_in_a_bucket_reads_the_same(tmp_path, monkeypatch):
    """The layouts a subset file can have: curate's streamed zip64 members (memory-mapped), a
    compressed archive (read into memory) and a bucket path (read into memory, pickled whole)."""
    import pickle
    import zipfile

    import numpy as np

    from entitynet.records import SCHEMA_VERSION, SUBSET_DTYPE, encode_subset, read_subset

    keys = _keys(2000, 3)
    arrays = encode_subset({"train": keys})
    streamed = tmp_path / "streamed.npz"
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("train.npy", "w", force_zip64=True) as entry:  # as beam_pipelines/curate.py
            dtype = np.dtype(SUBSET_DTYPE)
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
            np.lib.format.write_array_header_1_0(entry, {**header, "shape": (len(keys),)})
            entry.write(arrays["train"].tobytes())
        with z.open("_version.npy", "w") as entry:
            np.lib.format.write_array(entry, np.asarray(SCHEMA_VERSION))
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **arrays)
    a, b = read_subset(streamed, "train"), read_subset(compressed, "train")
    assert isinstance(a._pairs, np.memmap) and not isinstance(b._pairs, np.memmap)
    assert list(a) == list(b) == sorted(keys) and all(k in a and k in b for k in keys[:50])
    assert keys[0] in pickle.loads(pickle.dumps(b))

    from entitynet import storage

    class Bucket:  # STORE.read as a bucket answers it
        def read(self, path):
            return compressed.read_bytes() if path == "gs://bucket/subset.npz" else None

    monkeypatch.setattr(storage, "STORE", Bucket())
    remote = read_subset("gs://bucket/subset.npz", "train")
    with pytest.raises(EntityNetError, match=r"cannot read subset gs://bucket/none.npz"):
        read_subset("gs://bucket/none.npz", "train")
    assert isinstance(remote._pairs, np.ndarray) and keys[1] in remote
    copy = pickle.loads(pickle.dumps(remote))  # no file to map: the array itself travels
    assert copy._pairs is not None and keys[2] in copy


def test_a_subset_that_is_not_one_or_was_replaced_is_refused_naming_the_file(tmp_path):
    import os
    import pickle

    import numpy as np

    from entitynet.records import SCHEMA_VERSION, encode_subset, read_subset

    path = tmp_path / "subset.npz"
    np.savez(path, **encode_subset({"train": _keys(10, 4)}))
    with pytest.raises(EntityNetError, match=r"subset .*subset.npz has no split 'validation'"):
        read_subset(path, "validation")
    with pytest.raises(EntityNetError, match=r"cannot read subset .*none.npz"):
        read_subset(tmp_path / "none.npz", "train")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(EntityNetError, match=r"cannot read subset .*garbage.npz .*re-run `entitynet curate"):
        read_subset(tmp_path / "garbage.npz", "train")
    np.savez(tmp_path / "old.npz", train=encode_subset({"train": []})["train"], _version=SCHEMA_VERSION - 1)
    with pytest.raises(EntityNetError, match="schema version"):
        read_subset(tmp_path / "old.npz", "train")
    np.savez(tmp_path / "floats.npz", train=np.zeros(3), _version=SCHEMA_VERSION)
    with pytest.raises(EntityNetError, match="not keys"):
        read_subset(tmp_path / "floats.npz", "train")
    # a worker process opening the file after the run replaced it would filter by other keys
    sent = pickle.dumps(read_subset(path, "train"))
    np.savez(tmp_path / "new.npz", **encode_subset({"train": _keys(10, 5)}))
    os.replace(tmp_path / "new.npz", path)
    with pytest.raises(EntityNetError, match="was replaced while in use"):
        _ = "0" * 32 in pickle.loads(sent)
