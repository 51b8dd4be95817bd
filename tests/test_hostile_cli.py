"""Hostile input at the command line: each bad input ends in exit 2 and one `entitynet: error:`
line naming it, with no traceback and no output directory left behind. Table-driven; the cases
run in-process through `entitynet_cli.main.main`."""

import dataclasses
import json
import shutil
import typing
from pathlib import Path

import pytest
from hostile import tried
from hypothesis import given, settings
from hypothesis import strategies as st

from entitynet.errors import EntityNetError
from entitynet.records import (
    SCHEMA_VERSION,
    Candidate,
    Entity,
    Query,
    from_json,
    read_jsonl,
    to_json,
    write_jsonl,
)
from entitynet.shards import shard_paths
from entitynet_cli import main as cli
from entitynet_cli.common import unknown_beam_flags


@pytest.fixture(scope="module")
def bad(tiny_dataset, tmp_path_factory):
    """Damaged copies of the tiny dataset and bad JSONL files."""
    data, entities, _, _ = tiny_dataset
    root = tmp_path_factory.mktemp("hostile-cli")
    made = {"good": data, "root": root}
    for kind in ("truncated", "garbled"):
        d = root / kind
        shutil.copytree(data, d)
        shard = Path(shard_paths(d, "train")[0])
        raw = bytearray(shard.read_bytes())
        if kind == "truncated":
            raw = raw[: len(raw) // 2]
        else:
            for i in range(64, len(raw) - 64, 101):
                raw[i] ^= 0xFF
        shard.write_bytes(bytes(raw))
        made[kind] = d
    lines = [json.loads(x) for x in (data / "entities.jsonl").read_text().splitlines()]

    def jsonl(name, edit):
        rows = [dict(r) for r in lines[:3]]
        edit(rows)
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        made[name] = path

    jsonl("sitelinks", lambda rows: rows[1].update(sitelinks="lots"))
    jsonl("label_null", lambda rows: rows[1].update(label=None))
    jsonl("aliases_string", lambda rows: rows[0].update(aliases="Animalia"))
    jsonl("attribute_list", lambda rows: rows[0].update(attributes=["red"]))
    jsonl("bool_as_int", lambda rows: rows[0].update(depth=True))
    (root / "nonutf8.jsonl").write_bytes(b'{"v":2,"id":"Q1","label":"\xff\xfe"}\n')
    made["nonutf8"] = root / "nonutf8.jsonl"
    (root / "afile").write_text("x")
    made["afile"] = root / "afile"
    return made


def train_args(data, workdir, *overrides):
    return [
        "train",
        "--config",
        "configs/tiny_cpu.py",
        "--workdir",
        str(workdir),
        f"--config.data.shards={data}",
        f"--config.data.entities={data / 'entities.jsonl'}",
        f"--config.data.tokenizer={data / 'tokenizer.json'}",
        "--config.total_steps=2",
        "--config.batch_size=8",
        "--config.eval_every=0",
        "--config.progress=False",
        *overrides,
    ]


# (name, argv builder, what the error line must contain)
CASES = [
    (
        "curate: truncated shard",
        lambda b, o: [
            "curate",
            "--shards",
            str(b["truncated"]),
            "--entities",
            str(b["good"] / "entities.jsonl"),
            "--out",
            str(o),
        ],
        "truncated or corrupt",
    ),
    (
        "curate: garbled shard",
        lambda b, o: [
            "curate",
            "--shards",
            str(b["garbled"]),
            "--entities",
            str(b["good"] / "entities.jsonl"),
            "--out",
            str(o),
        ],
        "truncated or corrupt",
    ),
    (
        "tokenizer: truncated shard",
        lambda b, o: [
            "tokenizer",
            "train",
            "--shards",
            str(b["truncated"]),
            "--entities",
            str(b["good"] / "entities.jsonl"),
            "--out",
            str(o),
        ],
        "truncated or corrupt",
    ),
    (
        "tokenizer: garbled shard",
        lambda b, o: [
            "tokenizer",
            "train",
            "--shards",
            str(b["garbled"]),
            "--entities",
            str(b["good"] / "entities.jsonl"),
            "--out",
            str(o),
        ],
        "truncated or corrupt",
    ),
    ("train: truncated shard", lambda b, o: train_args(b["truncated"], o), "truncated or corrupt"),
    ("train: garbled shard", lambda b, o: train_args(b["garbled"], o), "truncated or corrupt"),
    (
        "queries: non-UTF-8 JSONL",
        lambda b, o: ["queries", "--entities", str(b["nonutf8"]), "--out", str(o)],
        "not UTF-8",
    ),
    (
        "queries: sitelinks a string",
        lambda b, o: ["queries", "--entities", str(b["sitelinks"]), "--out", str(o)],
        "'sitelinks' must be int",
    ),
    (
        "queries: label null",
        lambda b, o: ["queries", "--entities", str(b["label_null"]), "--out", str(o)],
        "'label' must be str",
    ),
    (
        "queries: aliases a string",
        lambda b, o: ["queries", "--entities", str(b["aliases_string"]), "--out", str(o)],
        "'aliases' must be a list",
    ),
    (
        "queries: attribute not an object",
        lambda b, o: ["queries", "--entities", str(b["attribute_list"]), "--out", str(o)],
        "must be an object",
    ),
    (
        "queries: bool for an int",
        lambda b, o: ["queries", "--entities", str(b["bool_as_int"]), "--out", str(o)],
        "'depth' must be int",
    ),
    ("train: workdir is a file", lambda b, o: train_args(b["good"], b["afile"]), "File exists"),
    (
        "train: workdir under a file",
        lambda b, o: train_args(b["good"], b["afile"] / "sub"),
        "Not a directory",
    ),
    (
        "tokenizer: out is a file",
        lambda b, o: [
            "tokenizer",
            "train",
            "--shards",
            str(b["good"]),
            "--entities",
            str(b["good"] / "entities.jsonl"),
            "--out",
            str(b["afile"]),
        ],
        "File exists",
    ),
    ("train: batch_size=0", lambda b, o: train_args(b["good"], o, "--config.batch_size=0"), "batch_size=0"),
    (
        "train: total_steps=-5",
        lambda b, o: train_args(b["good"], o, "--config.total_steps=-5"),
        "total_steps=-5",
    ),
    (
        "train: total_steps=1e400",
        lambda b, o: train_args(b["good"], o, "--config.total_steps=1e400"),
        "total_steps=1e400",
    ),
    ("train: loss=foo", lambda b, o: train_args(b["good"], o, "--config.loss=foo"), "loss='foo'"),
    ("train: lr=nan", lambda b, o: train_args(b["good"], o, "--config.optim.lr=nan"), "optim.lr=nan"),
    (
        "train: crop_scale reversed",
        lambda b, o: train_args(b["good"], o, "--config.data.crop_scale=(0.9, 0.1)"),
        "crop_scale",
    ),
    (
        "train: unknown field",
        lambda b, o: train_args(b["good"], o, "--config.optim.lrr=1"),
        "did you mean optim.lr",
    ),
    (
        "kg expand: Unicode digits in an id",
        lambda b, o: [
            "kg",
            "expand",
            "--kg-file",
            "entitynet/data/sample_kg.ttl",
            "--root",
            "Q7\u0662\u0669",
            "--out",
            str(o),
        ],
        "malformed root",
    ),
]


@pytest.mark.parametrize("name,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(bad, tmp_path, capsys, name, argv, needle):
    tried("command line")
    out = tmp_path / "out"
    rc = cli.main(argv(bad, out))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("entitynet: error: "), err
    assert "Traceback" not in err
    if needle:
        assert needle in lines[0], lines[0]
    assert not out.exists(), f"{name} left {out}"


def test_harvest_flag_ranges_and_typos_after_the_known_flags(bad, tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    queries.write_text("")
    base = [
        "harvest",
        "--queries",
        str(queries),
        "--searxng-url",
        "http://127.0.0.1:9",
        "--out",
        str(tmp_path / "o"),
    ]
    for extra, needle in (
        (["--threads", "0"], "--threads must be within 1..1024, got 0"),
        (["--fetch-retries", "-1"], "--fetch-retries must be within 0..100, got -1"),
        (["--total-timeout", "0"], "--total-timeout must be a positive number"),
        (["--licenses", "cc0,cc-bysa"], "unknown licence family 'cc-bysa' (did you mean cc-by-sa?)"),
        (["--exclude-licenses", "*-zz"], "'*-zz' matches no licence family"),
        (["--backend", "searxng,gbif"], "--backend gbif needs --entities"),
        (["--backend", "searxng,bing"], "unknown search backend 'bing'"),
        (["--endpoint", "gbif"], "--endpoint 'gbif': write it as BACKEND=URL"),
        (["--endpoint", "gbif=http://x"], "gbif is not among --backend searxng"),
    ):
        tried("command line")
        # the queries file is empty: the flag must be refused before that is noticed
        assert cli.main(base + extra) == 2
        assert needle in capsys.readouterr().err
    tried("command line")
    with pytest.raises(SystemExit) as exit_:
        cli.main(base + ["--allow-loopbak"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized argument --allow-loopbak (did you mean --allow-loopback?)" in err
    assert not (tmp_path / "o").exists()
    assert unknown_beam_flags(["--runner=DirectRunner", "--project", "p", "--direct_num_workers=2"]) == []


def test_the_codec_keeps_good_records_and_types(bad, tmp_path):
    tried("codec round trip")
    entities = list(read_jsonl(bad["good"] / "entities.jsonl", Entity))
    write_jsonl(tmp_path / "e.jsonl", entities)
    assert list(read_jsonl(tmp_path / "e.jsonl", Entity)) == entities
    assert all(isinstance(e.aliases, tuple) for e in entities)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _is(value, tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_is(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_is(v, args[0]) for v in value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, float)
    return isinstance(value, tp)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from([Entity, Query, Candidate]).flatmap(
        lambda cls: st.tuples(
            st.just(cls),
            st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(cls)]), JSON, max_size=6),
        )
    )
)
def test_any_json_object_is_a_typed_record_or_one_clear_error(tmp_path_factory, case):
    tried("property: arbitrary JSON record")
    cls, fields = case
    line = json.dumps({"v": SCHEMA_VERSION, **fields})
    try:
        record = from_json(cls, line)
    except (ValueError, TypeError) as e:
        assert str(e)  # says what is wrong
        path = tmp_path_factory.getbasetemp() / "bad.jsonl"
        path.write_text(line + "\n")
        with pytest.raises(EntityNetError, match=r"bad.jsonl:1: not a valid"):
            list(read_jsonl(path, cls))
        return
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        assert _is(getattr(record, f.name), hints[f.name]), (f.name, getattr(record, f.name))
    assert from_json(cls, to_json(record)) == record
