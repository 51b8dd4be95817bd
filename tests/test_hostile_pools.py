"""Hostile pools: every pool file (JSONL, CSV, TSV, Parquet) either gives rows of text or one
ConfigError naming the file and what to change; never another exception, never an empty harvest
that says nothing, never a Python repr where a caption was."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile import tried
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitynet.errors import ConfigError
from entitynet.records import Query, write_jsonl
from entitynet.search.pool import _TEXT as TEXT_COLUMNS
from entitynet.search.pool import pool_units, read_pool
from entitynet_cli import main as cli


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path):
    """What the harvest reads: the driver's unit listing (columns checked there), then the rows."""
    pool_units([str(path)])
    return list(read_pool(path))


# (name, writer(tmp_path) -> path, rows wanted or the error's words)
def _csv(name, text):
    def write(d):
        p = d / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


def _parquet(name, table):
    def write(d):
        p = d / name
        pq.write_table(table(), p)
        return p

    return write


def _bytes(name, data):
    def write(d):
        p = d / name
        p.write_bytes(data)
        return p

    return write


FOX = [("http://i/1.jpg", "a red fox", "")]
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark spreadsheet programs write
CASES = [
    ("csv with a byte-order mark", _bytes("bom.csv", BOM + b"url,text\nhttp://i/1.jpg,a red fox\n"), FOX),
    (
        "csv with a byte-order mark, text column first",
        _bytes("bom-text-first.csv", BOM + b"text,url\na red fox,http://i/1.jpg\n"),
        FOX,
    ),
    ("tsv with a byte-order mark", _bytes("bom.tsv", BOM + b"url\ttext\nhttp://i/1.jpg\ta red fox\n"), FOX),
    (
        "jsonl with a byte-order mark",
        _bytes("bom.jsonl", BOM + b'{"url": "http://i/1.jpg", "text": "a red fox"}\n'),
        FOX,
    ),
    (
        "csv without a text column",
        _csv("title.csv", "url,title\nhttp://i/1.jpg,a red fox\n"),
        "no text column",
    ),
    ("csv without a url column", _csv("link.csv", "link,text\nhttp://i/1.jpg,a red fox\n"), "no url column"),
    (
        "jsonl without a text key",
        lambda d: _jsonl(d / "title.jsonl", [{"url": "http://i/1.jpg", "title": "a red fox"}]),
        "no text column",
    ),
    (
        "jsonl with a text list",
        lambda d: _jsonl(
            d / "list.jsonl", [{"url": "http://i/1.jpg", "text": ["a red fox", "", None, "Vulpes"]}]
        ),
        [("http://i/1.jpg", "a red fox", ""), ("http://i/1.jpg", "Vulpes", "")],
    ),
    (
        "jsonl with a text object",
        lambda d: _jsonl(d / "obj.jsonl", [{"url": "http://i/1.jpg", "text": {"en": "a red fox"}}]),
        "obj.jsonl:1: the text is an object, not text",
    ),
    (
        "jsonl with a nested text list",
        lambda d: _jsonl(d / "nest.jsonl", [{"url": "http://i/1.jpg", "text": [["a red fox"]]}]),
        "the text list holds a list",
    ),
    (
        "jsonl with a url list",
        lambda d: _jsonl(d / "urls.jsonl", [{"url": ["http://i/1.jpg"], "text": "a red fox"}]),
        "the url is a list; give one string",
    ),
    (
        "jsonl with a boolean text",
        lambda d: _jsonl(d / "bool.jsonl", [{"url": "http://i/1.jpg", "text": True}]),
        "the text is a boolean",
    ),
    (
        "jsonl line that is an array",
        lambda d: _jsonl(d / "arr.jsonl", [["http://i/1.jpg", "a red fox"]]),
        "line 1 is not a JSON object",
    ),
    (
        "jsonl line that is not JSON",
        _csv("junk.jsonl", '{"url": "http://i/1.jpg", "text": \n'),
        "line 1 is not JSON",
    ),
    (
        "csv with a quote left open",
        _csv("open.csv", 'url,text\n"http://i/1.jpg,a red fox\nhttp://i/2.jpg,a red fox\n'),
        "open.csv is malformed: line 3: unexpected end of data",
    ),
    ("csv not UTF-8", _bytes("latin.csv", b"url,text\nhttp://i/1.jpg,caf\xe9\n"), "not a readable csv file"),
    ("empty csv", _bytes("empty.csv", b""), []),
    ("empty jsonl", _bytes("empty.jsonl", b""), []),
    ("csv header only", _csv("header.csv", "url,text\n"), []),
    (
        "csv with a caption over the field limit",
        _csv("huge.csv", "url,text\nhttp://i/1.jpg," + "x" * (17 << 20) + "\n"),
        "huge.csv is malformed: line 2: field larger than field limit",
    ),
    (
        "csv with a 200 KB caption",
        _csv("long.csv", "url,text\nhttp://i/1.jpg," + "x" * 200_000 + " fox\n"),
        [("http://i/1.jpg", "x" * 200_000 + " fox", "")],
    ),
    (
        "csv with a NUL byte",
        _csv("nul.csv", "url,text\nhttp://i/1.jpg,red\x00fox\n"),
        [("http://i/1.jpg", "red\x00fox", "")],
    ),
    (
        "parquet text list column",
        _parquet(
            "list.parquet",
            lambda: pa.table(
                {"url": ["http://i/1.jpg", "http://i/2.jpg"], "text": [["a red fox", "Vulpes"], None]}
            ),
        ),
        [("http://i/1.jpg", "a red fox", ""), ("http://i/1.jpg", "Vulpes", ""), ("http://i/2.jpg", "", "")],
    ),
    (
        "parquet text struct column",
        _parquet(
            "struct.parquet", lambda: pa.table({"url": ["http://i/1.jpg"], "text": [{"en": "a red fox"}]})
        ),
        "column 'text' is of type struct<en: string>, not text",
    ),
    (
        "parquet text map column",
        _parquet(
            "map.parquet",
            lambda: pa.table(
                {
                    "url": ["http://i/1.jpg"],
                    "text": pa.array([[("en", "fox")]], pa.map_(pa.string(), pa.string())),
                }
            ),
        ),
        "column 'text' is of type map<string, string",
    ),
    (
        "parquet list of structs",
        _parquet(
            "liststruct.parquet", lambda: pa.table({"url": ["http://i/1.jpg"], "text": [[{"en": "fox"}]]})
        ),
        "not text",
    ),
    (
        "parquet url list column",
        _parquet("urllist.parquet", lambda: pa.table({"url": [["http://i/1.jpg"]], "text": ["a red fox"]})),
        "column 'url' is of type list<",
    ),
    (
        "parquet binary text, not UTF-8",
        _parquet(
            "binary.parquet",
            lambda: pa.table({"url": ["http://i/1.jpg"], "text": pa.array([b"\xff\xfe"], pa.binary())}),
        ),
        "column 'text' does not hold UTF-8 text",
    ),
    (
        "parquet large strings and a dictionary column",
        _parquet(
            "large.parquet",
            lambda: pa.table(
                {
                    "url": pa.array(["http://i/1.jpg"], pa.large_string()),
                    "caption": pa.array(["a red fox"]).dictionary_encode(),
                }
            ),
        ),
        FOX,
    ),
    (
        "parquet without a text column",
        _parquet("notext.parquet", lambda: pa.table({"url": ["http://i/1.jpg"], "title": ["a red fox"]})),
        "no text column (one of text, caption",
    ),
    ("parquet truncated", _bytes("cut.parquet", b"PAR1\x00\x00"), "not a readable parquet file"),
]


@pytest.mark.parametrize("name,write,wanted", CASES, ids=[c[0] for c in CASES])
def test_hostile_pool_files(tmp_path, name, write, wanted):
    tried("pool file")
    path = write(tmp_path)
    if isinstance(wanted, str):
        with pytest.raises(ConfigError) as e:
            _read(path)
        message = str(e.value)
        assert wanted in message and path.name in message and "\n" not in message, message
    else:
        assert _read(path) == wanted


def test_a_directory_or_a_pipe_as_a_pool_is_refused_before_reading(tmp_path):
    import os

    from entitynet.search.pool import pool_files

    (tmp_path / "dir.jsonl").mkdir()
    os.mkfifo(tmp_path / "pipe.jsonl")  # reading it would block the harvest for ever
    for name, words in (("dir.jsonl", "is a directory"), ("pipe.jsonl", "is not a regular file")):
        tried("pool file")
        with pytest.raises(ConfigError, match=words):
            pool_files(str(tmp_path / name))


def test_a_pool_without_a_text_column_stops_the_harvest_in_one_line(tmp_path, capsys):
    tried("pool file")
    pool = tmp_path / "pool.csv"
    pool.write_text("url,title\nhttp://127.0.0.1:9/1.jpg,a red fox\n")
    queries = tmp_path / "queries.jsonl"
    write_jsonl(queries, [Query(id="q1", text="red fox", kind="noun", entity_ids=("Q1",))])
    out = tmp_path / "out"
    rc = cli.main(
        ["harvest", "--backend", "pool", "--pool", str(pool), "--queries", str(queries), "--out", str(out)]
    )
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert rc == 2 and len(err) == 1, err
    assert "pool.csv has no text column" in err[0] and "'title'" in err[0]
    assert not out.exists()


# ---------------------------------------------------------------- properties

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=12)
CELL = st.none() | TEXT
COLUMNS = ("url", "text", "caption", "page_url", "title")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.fixed_dictionaries({c: CELL for c in COLUMNS}), min_size=1, max_size=8))
def test_csv_jsonl_and_parquet_of_the_same_rows_read_the_same(tmp_path, rows):
    """The same table written in three formats gives the same (url, text, page) rows (CSV has no
    null: an empty cell there is an empty string, as it is for the other readers)."""
    tried("property: pool schema", 3)
    rows = [{k: (v or None) for k, v in r.items()} for r in rows]
    _jsonl(tmp_path / "p.jsonl", rows)
    pq.write_table(
        pa.Table.from_pylist(rows, pa.schema([(c, pa.string()) for c in COLUMNS])), tmp_path / "p.parquet"
    )
    import csv

    with open(tmp_path / "p.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({k: v or "" for k, v in r.items()} for r in rows)
    got = [_read(tmp_path / f"p.{ext}") for ext in ("jsonl", "parquet", "csv")]
    assert got[0] == got[1] == got[2]
    # and it is what the rows say: the first non-empty url, text (text before caption) and page
    assert got[0] == [
        (r["url"], r["text"] or r["caption"] or "", r["page_url"] or "") for r in rows if r["url"]
    ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=2),
    max_leaves=5,
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.dictionaries(st.sampled_from(COLUMNS) | TEXT, JSON, max_size=4), min_size=1, max_size=5))
def test_any_jsonl_pool_gives_text_rows_or_one_clear_error(tmp_path, rows):
    tried("property: pool schema")
    path = _jsonl(tmp_path / "any.jsonl", rows)
    try:
        got = _read(path)
    except ConfigError as e:
        assert "any.jsonl" in str(e) and "\n" not in str(e)
        return
    # every text is one of the rows' strings (or a number's digits): never a list's or object's repr
    allowed = {""}
    for r in rows:
        for k in TEXT_COLUMNS:
            v = r.get(k)
            for x in v if isinstance(v, list) else [v]:
                if isinstance(x, str):
                    allowed.add(x)
                elif isinstance(x, int | float) and not isinstance(x, bool):
                    allowed.add(repr(x))
    for url, text, page in got:
        assert all(isinstance(x, str) for x in (url, text, page)) and url
        assert text in allowed, text
    assert any(k in r for r in rows for k in TEXT_COLUMNS)  # no text column at all is an error


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"url": st.none() | TEXT, "text": st.none() | st.lists(st.none() | TEXT, max_size=3)}
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_list_of_texts_reads_the_same_from_jsonl_and_parquet(tmp_path, rows):
    tried("property: pool schema", 2)
    _jsonl(tmp_path / "l.jsonl", rows)
    schema = pa.schema([("url", pa.string()), ("text", pa.list_(pa.string()))])
    pq.write_table(pa.Table.from_pylist(rows, schema), tmp_path / "l.parquet")
    wanted = []
    for r in rows:
        if not r["url"]:
            continue
        texts = [t for t in (r["text"] or []) if t]
        wanted += [(r["url"], t, "") for t in texts or [""]]
    assert _read(tmp_path / "l.jsonl") == _read(tmp_path / "l.parquet") == wanted
