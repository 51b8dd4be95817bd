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
