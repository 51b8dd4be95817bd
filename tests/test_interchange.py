"""`entitynet data export` and `entitynet data import`: WebDataset (img2dataset's layout) and Parquet
with image bytes, read back by the field's own readers (`webdataset`, Hugging Face `datasets`,
pyarrow), a round trip that restores every record exactly, and other people's shards (img2dataset
style tars, Parquet with image bytes, a damaged tar) imported as a harvest and curated."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from factories import rendered

from beam_pipelines import data_export, data_import
from entitynet import records, shards
from entitynet.errors import ConfigError, EntityNetError, OutputError
from entitynet.interchange import webdataset as wds
from entitynet.interchange.export import ExportOptions, plan_shards
from entitynet.interchange.foreign import ImportOptions
from entitynet.records import EntityLink, Provenance, Query, write_jsonl
from entitynet.text.queries import build_queries
from entitynet_cli.main import main

SPLITS = {"train": 0.75, "validation": 0.25}


def _rich(r, e, k):
    """`r` with every field a harvest sets: links with evidence, provenance, licence, query ranks."""
    lic = ("CC-BY-4.0", "unknown", "CC0-1.0")[k % 3]
    return replace(
        r,
        alt_texts=(f"a photo of a {e.label}", f"{e.label} no. {k}"),
        query_ids=(f"q{e.id}", f"a{e.id}"),
        query_ranks=(k, 3),
        links=(
            EntityLink(e.id, ("noun",), k, True, "alt_text"),
            EntityLink("Q1", ("alias",), 9, False, "weak"),
        ),
        license=lic,
        license_url="https://creativecommons.org/licenses/by/4.0/" if lic == "CC-BY-4.0" else "",
        attribution=f"photographer {k}",
        provenance=(Provenance("searxng", r.url, f"http://t/page/{k}", lic, "", f"photographer {k}"),),
        id_entities=(e.id,) if k % 4 == 0 else (),
        urls=(r.url, r.url + "?copy"),
        page_url=f"http://t/page/{k}",
    )


def write_dataset(out: Path, recs: list, num_shards: int = 2) -> None:
    """A harvest-layout dataset of `recs` (ArrayRecord shards by split, TFDS metadata, stats)."""
    by: dict = {}
    for r in recs:
        by.setdefault((shards.split_of(r.key, SPLITS), shards.shard_of(r.key, num_shards)), []).append(r)
    lengths = {s: [0] * num_shards for s in SPLITS}
    for (split, i), group in sorted(by.items()):
        group.sort(key=lambda r: r.key)
        shards.write_shard(
            out / shards.shard_filename(split, i, num_shards), (records.encode_image(r) for r in group)
        )
        lengths[split][i] = len(group)
    for split, counts in lengths.items():
        for i, n in enumerate(counts):
            if not n:
                shards.write_shard(out / shards.shard_filename(split, i, num_shards), [])
    shards.write_metadata(out, lengths, {s: sum(len(r.jpeg) for r in recs) for s in SPLITS})
    (out / shards.HARVEST_STATS).write_text("{}")


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_entities):
    """A dataset of 24 entities x 6 renders (96x80) with every record field set, its entities and
    the name queries of those entities."""
    root = tmp_path_factory.mktemp("interchange")
    entities = [e for e in sample_entities if e.depth > 0][:24]
    recs = [_rich(rendered(e, k, (96, 80)), e, k) for e in entities for k in range(6)]
    data = root / "data"
    data.mkdir()
    write_dataset(data, recs)
    write_jsonl(root / "entities.jsonl", entities)
    write_jsonl(root / "queries.jsonl", build_queries(entities))
    return root, entities, recs


def train_records(directory) -> dict:
    return {r.key: r for r in shards.iter_records(directory, "train")}


def members(tar_path) -> list[str]:
    with tarfile.open(tar_path) as t:
        return t.getnames()


def test_webdataset_export_is_img2dataset_layout_read_by_webdataset(world, tmp_path):
    import pyarrow.parquet as pq
    import webdataset

    root, entities, recs = world
    out = tmp_path / "wds"
    opts = ExportOptions(text="mix", num_shards=3)
    stats = data_export.run(str(root / "data"), str(out), opts, str(root / "entities.jsonl"))
    train = train_records(root / "data")
    assert stats["records"] == len(train) and stats["shards"] == 3
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted(
        [n for i in range(3) for n in wds.shard_files(i)]
        + ["sizes.json", "export_stats.json", "export_config.json"]
    )
    sizes = json.loads((out / "sizes.json").read_text())
    assert sum(sizes.values()) == len(train) and sorted(sizes) == ["00000.tar", "00001.tar", "00002.tar"]
    by_key = {}
    for i in range(3):
        tar = out / f"{i:05d}.tar"
        keys = [n.split(".")[0] for n in members(tar)]
        assert keys == sorted(keys) and keys[::3] == sorted(set(keys))  # sorted, jpg/txt/json together
        stats_i = json.loads((out / f"{i:05d}_stats.json").read_text())
        assert stats_i["count"] == stats_i["successes"] == sizes[f"{i:05d}.tar"] == len(keys) // 3
        sidecar = pq.read_table(out / f"{i:05d}.parquet").to_pylist()
        assert [row["key"] for row in sidecar] == keys[::3]
        for s in webdataset.WebDataset(str(tar), shardshuffle=False).decode("pil"):
            assert set(s) >= {"jpg", "txt", "json"} and s["jpg"].size == (96, 80)
            assert s["txt"] == s["json"]["caption"] and s["__key__"] == s["json"]["key"]
            by_key[s["__key__"]] = s["json"]
    assert set(by_key) == set(train)
    for key, meta in by_key.items():
        r = train[key]
        assert meta["alt_texts"] == list(r.alt_texts) and meta["entity_ids"] == list(r.entity_ids)
        assert meta["entity_names"] == [next(e.label for e in entities if e.id == x) for x in r.entity_ids]
        assert meta["license"] == r.license and meta["attribution"] == r.attribution
        source = meta["text_source"]
        assert (
            (meta["caption"] in r.alt_texts) if source == "alt" else (meta["caption"] in meta["kg_captions"])
        )
    drawn = {m["text_source"] for m in by_key.values()}
    assert drawn == {"alt", "kg"}  # mix draws both
    # the brace pattern open_clip and webdataset take names every shard
    assert stats["train_data"] == f"{out}/{{00000..00002}}.tar"


def test_text_choice_and_determinism(world, tmp_path):
    root, _, _ = world
    ents = str(root / "entities.jsonl")

    def export(name, **kw):
        out = tmp_path / name
        data_export.run(str(root / "data"), str(out), ExportOptions(num_shards=2, **kw), ents)
        return out

    a, b, c = (
        export("a", text="mix", seed=1),
        export("b", text="mix", seed=1),
        export("c", text="mix", seed=2),
    )
    for i in range(2):  # the same options make the same bytes; another seed other draws
        assert (a / f"{i:05d}.tar").read_bytes() == (b / f"{i:05d}.tar").read_bytes()
    texts = lambda d: [  # noqa: E731
        json.loads(line)["caption"] for i in range(2) for line in _jsons(d / f"{i:05d}.tar")
    ]
    assert texts(a) != texts(c)
    alt, kg = export("alt", text="alt"), export("kg", text="kg")
    assert all(
        m["text_source"] == "alt" for i in range(2) for m in map(json.loads, _jsons(alt / f"{i:05d}.tar"))
    )
    assert all(
        m["text_source"] == "kg" for i in range(2) for m in map(json.loads, _jsons(kg / f"{i:05d}.tar"))
    )
    with pytest.raises(ConfigError, match="--entities"):
        data_export.run(str(root / "data"), str(tmp_path / "x"), ExportOptions(text="kg"))


def _jsons(tar_path) -> list[str]:
    with tarfile.open(tar_path) as t:
        return [t.extractfile(m).read().decode() for m in t.getmembers() if m.name.endswith(".json")]


def test_shards_follow_the_target_size():
    opts = ExportOptions(target_shard_mb=1.0)
    assert plan_shards(1000, 5_500_000, opts) == 6
    assert plan_shards(3, 50_000_000, opts) == 3  # never more shards than records
    assert plan_shards(10, 0, opts) == 1
    assert plan_shards(10, 5_500_000, ExportOptions(num_shards=4)) == 4


def test_parquet_export_reads_with_hugging_face_datasets(world, tmp_path):
    import datasets

    root, _, _ = world
    out = tmp_path / "pq"
    stats = data_export.run(
        str(root / "data"),
        str(out),
        ExportOptions(format="parquet", num_shards=2),
        str(root / "entities.jsonl"),
    )
    files = sorted(str(p) for p in (out / "data").glob("*.parquet"))
    assert [Path(f).name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert len(ds) == stats["records"] == len(train_records(root / "data"))
    assert isinstance(ds.features["image"], datasets.Image)
    row = ds[0]
    assert row["image"].size == (96, 80) and row["caption"] in row["alt_texts"]
    # the card's YAML names the files and the features: the directory alone is enough
    card = datasets.load_dataset(str(out), split="train")
    assert len(card) == len(ds) and isinstance(card.features["image"], datasets.Image)


def test_export_resumes_and_refuses_other_options(world, tmp_path, capsys):
    root, _, _ = world
    out = tmp_path / "wds"
    ents = str(root / "entities.jsonl")
    opts = ExportOptions(num_shards=3)
    data_export.run(str(root / "data"), str(out), opts, ents)
    before = {i: (out / f"{i:05d}.tar").read_bytes() for i in range(3)}
    # a run killed while writing shard 1: its stats (written last) and its tar are missing
    (out / "00001_stats.json").unlink()
    (out / "00001.tar").write_bytes(b"half a tar")
    stats = data_export.run(str(root / "data"), str(out), opts, ents)
    assert stats["resumed_shards"] == 2
    assert {i: (out / f"{i:05d}.tar").read_bytes() for i in range(3)} == before
    # other options into the same directory: one line, nothing changed
    code = main(["data", "export", "--data", str(root / "data"), "--out", str(out), "--num-shards", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "other options" in err and "num_shards" in err
    assert {i: (out / f"{i:05d}.tar").read_bytes() for i in range(3)} == before


def test_export_applies_a_curated_subset(world, tmp_path):
    import numpy as np

    root, _, _ = world
    train = sorted(train_records(root / "data"))
    keep = train[::2]
    curated = tmp_path / "curated"
    curated.mkdir()
    np.savez(curated / "subset.npz", **records.encode_subset({"train": keep, "validation": []}))
    (curated / shards.CURATION_STATS).write_text(json.dumps({"input": str(root / "data")}))
    (curated / "curation_config.json").write_text(json.dumps({"entities_file": str(root / "entities.jsonl")}))
    out = tmp_path / "wds"
    stats = data_export.run(str(curated), str(out), ExportOptions(text="kg", num_shards=1))
    keys = [n.split(".")[0] for n in members(out / "00000.tar")][::3]
    assert keys == keep and stats["records"] == len(keep)


def test_round_trip_restores_every_record(world, tmp_path):
    root, _, _ = world
    train = train_records(root / "data")
    for fmt in ("webdataset", "parquet"):
        out, back = tmp_path / f"{fmt}-out", tmp_path / f"{fmt}-back"
        data_export.run(
            str(root / "data"),
            str(out),
            ExportOptions(format=fmt, num_shards=2, text="mix"),
            str(root / "entities.jsonl"),
        )
        pattern = str(out / "*.tar") if fmt == "webdataset" else str(out / "data" / "*.parquet")
        opts = ImportOptions(num_shards=2, splits=tuple(SPLITS.items()))
        stats = data_import.run(
            [pattern], str(root / "queries.jsonl"), str(root / "entities.jsonl"), opts, str(back)
        )
        assert stats["restored"] == stats["records"] == len(train) and stats["matched"] == 0
        assert train_records(back) == train, fmt  # keys, bytes, texts, links, licence, provenance


def _tar(path: Path, samples: list[tuple[str, dict]], cut: int = 0) -> None:
    """An img2dataset-style tar: NNNNNNNNN.jpg/.txt/.json per sample (`cut`: truncated to that many
    bytes, as a killed download leaves it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for key, s in samples:
            for ext, data in (("jpg", s.get("jpg")), ("txt", s.get("txt")), ("json", s.get("json"))):
                if data is None:
                    continue
                data = (
                    data
                    if isinstance(data, bytes)
                    else (json.dumps(data) if ext == "json" else data).encode()
                )
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[:cut] if cut else data)


def test_import_foreign_shards_then_curate(world, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, entities, _ = world
    fox, owl = entities[0], entities[1]
    img = lambda e, k: rendered(e, 50 + k, (96, 80)).jpeg  # noqa: E731
    samples = [
        (
            f"0000{k:05d}",
            {
                "jpg": img(fox, k),
                "txt": f"my {fox.label} in the garden",
                "json": {
                    "url": f"http://laion/{k}.jpg",
                    "caption": f"my {fox.label}",
                    "LICENSE": "cc-by 4.0",
                    "status": "success",
                },
            },
        )
        for k in range(4)
    ]
    samples.append(("000000010", {"jpg": img(owl, 0), "txt": "a sunset over the sea"}))  # names no entity
    samples.append(("000000011", {"jpg": b"not an image", "txt": f"a {owl.label}"}))  # rejected
    samples.append(("000000012", {"txt": f"a {owl.label}"}))  # no image
    samples.append(
        ("000000013", {"jpg": img(fox, 0), "txt": f"{fox.label} again"})
    )  # same bytes: a duplicate
    (tmp_path / "in").mkdir()
    _tar(tmp_path / "in" / "00000.tar", samples)
    good = [(f"1000{k:05d}", {"jpg": img(owl, 10 + k), "txt": f"an {owl.label} at night"}) for k in range(3)]
    _tar(tmp_path / "in" / "00001.tar", good, cut=len(img(owl, 10)) + 2048)  # damaged after the first sample
    table = pa.table(
        {
            "image": [{"bytes": img(owl, 20 + k), "path": f"{k}.jpg"} for k in range(3)],
            "caption": [f"the {owl.label}, perched"] * 3,
            "license": ["CC0-1.0"] * 3,
        }
    )
    pq.write_table(table, tmp_path / "in" / "hub.parquet")
    out = tmp_path / "imported"
    code = main(
        [
            "data",
            "import",
            "--input",
            str(tmp_path / "in" / "{00000..00001}.tar"),
            "--input",
            str(tmp_path / "in" / "*.parquet"),
            "--queries",
            str(root / "queries.jsonl"),
            "--entities",
            str(root / "entities.jsonl"),
            "--source",
            "laion",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    stats = json.loads((out / "import_stats.json").read_text())
    assert stats["samples"] == 8 + 1 + 3 and stats["matched"] == 4 + 1 + 1 + 3
    po = stats["per_outcome"]
    assert (
        po["unmatched"] == 1 and po["no_image"] == 1 and po["duplicate"] == 1 and po["unreadable_file"] == 1
    )
    assert po["not_an_image"] == 1  # the harvest's image checks
    info = shards.check_directory(out)
    recs = [r for s in info["splits"] for r in shards.iter_records(out, s["name"])]
    assert len(recs) == stats["records"] == 4 + 1 + 3
    foxes = [r for r in recs if fox.id in r.entity_ids]
    assert len(foxes) == 4 and all(r.license == "CC-BY-4.0" and r.sources == ("laion",) for r in foxes)
    assert {r.url for r in foxes} >= {"http://laion/1.jpg"}
    assert all(
        r.license == "CC0-1.0"
        for r in recs
        if r.url.endswith(tuple(f"hub.parquet#{k}" for k in ("0-0", "0-1", "0-2")))
    )
    assert "next: entitynet curate" in text
    # the import is a harvest to curate: deduplicated, decontaminated, balanced like any
    code = main(
        [
            "curate",
            "--shards",
            str(out),
            "--entities",
            str(root / "entities.jsonl"),
            "--t",
            "2",
            "--out",
            str(tmp_path / "cur"),
        ]
    )
    assert code == 0, capsys.readouterr()
    cur = json.loads((tmp_path / "cur" / "curation_stats.json").read_text())
    assert 0 < sum(cur["kept"].values()) < len(recs)


def test_import_bad_inputs_say_one_line(world, tmp_path, capsys):
    root, _, _ = world
    (tmp_path / "notes.txt").write_text("hi")
    cases = [
        (["--input", str(tmp_path / "none-*.tar")], "matches no file"),
        (["--input", str(tmp_path / "notes.txt")], "not a WebDataset tar or a Parquet file"),
    ]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    cases.append((["--input", str(tmp_path / "bad.parquet")], "not a readable Parquet file"))
    for flags, said in cases:
        code = main(
            ["data", "import", *flags, "--queries", str(root / "queries.jsonl"), "--out", str(tmp_path / "o")]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and said in err, err
        assert not (tmp_path / "o").exists()
    code = main(["data", "export", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "not a dataset" in err and not (tmp_path / "o").exists()


def test_import_of_nothing_matching_writes_no_dataset(world, tmp_path):
    root, entities, _ = world
    (tmp_path / "in").mkdir()
    _tar(
        tmp_path / "in" / "00000.tar",
        [("a", {"jpg": rendered(entities[0], 1, (96, 80)).jpeg, "txt": "a sunset"})],
    )
    with pytest.raises(OutputError, match="kept no record"):
        data_import.run(
            [str(tmp_path / "in" / "00000.tar")],
            str(root / "queries.jsonl"),
            "",
            ImportOptions(),
            str(tmp_path / "o"),
        )
    assert not (tmp_path / "o" / "dataset_info.json").exists()


def test_a_hostile_member_is_not_read(world, tmp_path, monkeypatch):
    root, entities, _ = world
    monkeypatch.setattr(wds, "MAX_MEMBER", 1000)
    (tmp_path / "in").mkdir()
    big = rendered(entities[0], 1, (96, 80)).jpeg
    assert len(big) > 1000
    _tar(tmp_path / "in" / "00000.tar", [("a", {"jpg": big, "txt": entities[0].label})])
    samples = list(wds.iter_tar(str(tmp_path / "in" / "00000.tar")))
    assert len(samples) == 1 and samples[0].skipped and not samples[0].image


def test_no_queries_no_import(tmp_path, world):
    root, _, _ = world
    write_jsonl(tmp_path / "q.jsonl", [Query("x", "red", "attribute", ("Q1",))])
    (tmp_path / "a.tar").write_bytes(b"")
    with pytest.raises(EntityNetError, match="no name queries"):
        data_import.run(
            [str(tmp_path / "a.tar")], str(tmp_path / "q.jsonl"), "", ImportOptions(), str(tmp_path / "o")
        )


def test_damaged_tars_never_stop_an_import(world, tmp_path):
    """A tar cut anywhere, or with bytes overwritten: reading it yields whole samples or raises a
    tar/OS error (which the import counts as `unreadable_file` and goes on); never anything else,
    and a tar cut after its first sample still gives that sample."""
    import random

    import hostile

    root, entities, _ = world
    good = [
        (f"{k:09d}", {"jpg": rendered(entities[k], 3, (96, 80)).jpeg, "txt": entities[k].label})
        for k in range(4)
    ]
    _tar(tmp_path / "whole.tar", good)
    whole = (tmp_path / "whole.tar").read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as t:
        last = t.getmembers()[-1]
        data_end = last.offset_data + -(-last.size // 512) * 512
    rng = random.Random(7)
    cases = [("cut", rng.randrange(1, len(whole))) for _ in range(40)]
    cases += [("flip", rng.randrange(0, len(whole))) for _ in range(40)]
    first_end = 512 + -(-len(good[0][1]["jpg"]) // 512) * 512 + 1024  # the first sample's jpg and txt
    for kind, at in cases:
        path = tmp_path / f"{kind}-{at}.tar"
        if kind == "cut":
            path.write_bytes(whole[:at])
        else:
            path.write_bytes(whole[:at] + bytes([whole[at] ^ 0xFF]) + whole[at + 1 :])
        got = []
        try:
            for s in wds.iter_tar(str(path)):
                got.append(s)
        except (tarfile.TarError, OSError, EOFError):
            assert kind == "flip" or at < data_end + 1024, (kind, at)  # a cut into the padding is whole
        else:
            assert kind == "flip" or at >= data_end + 1024, (kind, at)  # only the padding was cut
        assert len(got) <= len(good)
        if kind == "cut" and at >= first_end + 512:
            assert got and got[0].key == good[0][0] and got[0].image == good[0][1]["jpg"]
    hostile.tried("interchange-tar", len(cases))
    # the import of all of them: every one counted, nothing raised
    stats = data_import.run(
        [str(tmp_path / "*-*.tar")],
        str(root / "queries.jsonl"),
        str(root / "entities.jsonl"),
        ImportOptions(),
        str(tmp_path / "out"),
    )
    assert stats["per_outcome"].get("unreadable_file", 0) >= 1 and stats["records"] >= 4


def test_import_reads_tars_written_by_webdatasets_own_writer(world, tmp_path):
    """img2dataset writes its tars with webdataset's TarWriter (PAX headers, fractional dates): such
    a tar, with img2dataset's JSON fields, imports as the others."""
    import webdataset

    root, entities, _ = world
    (tmp_path / "in").mkdir()
    with webdataset.TarWriter(str(tmp_path / "in" / "00000.tar")) as w:
        for k in range(3):
            e = entities[k]
            meta = {"url": f"http://x/{k}.jpg", "caption": f"a {e.label}", "key": f"00000{k:04d}", "status": "success",
                    "width": 96, "height": 80, "original_width": 96, "original_height": 80, "LICENSE": "CC0"}  # fmt: skip
            w.write(
                {
                    "__key__": meta["key"],
                    "jpg": rendered(e, 30 + k, (96, 80)).jpeg,
                    "txt": meta["caption"],
                    "json": meta,
                }
            )
    stats = data_import.run(
        [str(tmp_path / "in" / "00000.tar")],
        str(root / "queries.jsonl"),
        "",
        ImportOptions(),
        str(tmp_path / "o"),
    )
    assert stats["matched"] == stats["records"] == 3 and "unreadable_file" not in stats["per_outcome"]
    recs = [
        r
        for s in shards.check_directory(tmp_path / "o")["splits"]
        for r in shards.iter_records(tmp_path / "o", s["name"])
    ]
    assert sorted(r.url for r in recs) == [f"http://x/{k}.jpg" for k in range(3)]
    assert {r.license for r in recs} == {"CC0-1.0"} and all(len(r.entity_ids) >= 1 for r in recs)
