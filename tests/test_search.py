"""Search backends against a loopback server that answers in each API's documented shape."""

import json
import time
import urllib.parse
from collections import Counter

import pytest
from hostile import tried
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackHandler, LoopbackServer

from entitynet.errors import ConfigError
from entitynet.records import Candidate, Entity, Query, merge_candidates, query_id
from entitynet.search.base import JsonApi, SearchCache, SearchError, cached_search, parse_size
from entitynet.search.commons import Commons, file_name
from entitynet.search.pool import Pool, read_pool
from entitynet.search.web import Brave, GoogleCSE, SearXNG
from entitynet.text.matching import Matcher, normalise

FOX = Query(
    id=query_id("noun", "red fox"),
    text="red fox",
    kind="noun",
    entity_ids=("Q8332",),
    exclude_terms=("drawing", "cartoon"),
    or_terms=("Vulpes vulpes",),
)


class Apis:
    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[str] = []
        apis = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = self.params
                apis.requests.append({"path": url.path, "params": q, "headers": dict(self.headers)})
                step = apis.script.pop(0) if apis.script else "ok"
                if step == "429":
                    return self.send_json(429, {"error": "slow down"}, [("Retry-After", "1")])
                if step == "html":
                    return self.send_json(200, b"<html>maintenance</html>")
                if step == "403":
                    return self.send_json(403, {"error": "invalid key"})
                if url.path == "/wrongshape/search":
                    return self.send_json(200, {"answer": 42})
                if url.path == "/searxng/search":
                    if q.get("pageno") != "1":
                        return self.send_json(200, {"query": q["q"], "results": []})
                    return self.send_json(
                        200,
                        {
                            "query": q["q"],
                            "results": [
                                {
                                    "img_src": "http://img.example/fox1.jpg",
                                    "url": "http://page.example/a",
                                    "title": "Red fox in snow",
                                    "content": "",
                                    "resolution": "1024 x 768",
                                },
                                {
                                    "img_src": "data:image/png;base64,xx",
                                    "url": "http://page.example/b",
                                    "title": "x",
                                },
                                {
                                    "img_src": "http://img.example/fox2.jpg",
                                    "url": "http://page.example/c",
                                    "title": "Fox",
                                },
                            ],
                        },
                    )
                if url.path == "/google/customsearch/v1":
                    if q.get("start") != "1":
                        return self.send_json(200, {"kind": "customsearch#search"})
                    return self.send_json(
                        200,
                        {
                            "kind": "customsearch#search",
                            "items": [
                                {
                                    "link": "http://img.example/g1.jpg",
                                    "title": "Red fox",
                                    "snippet": "A red fox hunting",
                                    "image": {
                                        "contextLink": "http://page.example/g",
                                        "height": 600,
                                        "width": 800,
                                    },
                                }
                            ],
                        },
                    )
                if url.path == "/brave/images":
                    return self.send_json(
                        200,
                        {
                            "type": "images",
                            "results": [
                                {
                                    "type": "image_result",
                                    "title": "Fox portrait",
                                    "url": "http://page.example/br",
                                    "properties": {
                                        "url": "http://img.example/b1.jpg",
                                        "placeholder": "x",
                                        "width": 640,
                                        "height": 480,
                                    },
                                },
                                {
                                    "type": "image_result",
                                    "title": "no image",
                                    "url": "http://page.example/none",
                                },
                            ],
                        },
                    )
                if url.path == "/commons/api.php":
                    return self.send_json(
                        200,
                        {
                            "batchcomplete": True,
                            "query": {
                                "pages": [
                                    {
                                        "pageid": 1,
                                        "ns": 6,
                                        "title": q["titles"],
                                        "imageinfo": [
                                            {
                                                "extmetadata": {
                                                    "ImageDescription": {
                                                        "value": "<p>A <b>red fox</b> (<i>Vulpes vulpes</i>)</p>"
                                                    },
                                                    "ObjectName": {"value": "Red fox"},
                                                }
                                            }
                                        ],
                                    }
                                ]
                            },
                        },
                    )
                return self.send_json(404, {"error": "no such API"})

        self.server = LoopbackServer(Handler)
        self.base = self.server.base

    def close(self):
        self.server.close()


@pytest.fixture
def apis():
    a = Apis()
    yield a
    a.close()


FAST = {"requests_per_second": 0, "backoff": 0.05, "retries": 2}


def test_searxng(apis):
    found = SearXNG(apis.base + "/searxng", **FAST).search(FOX)
    assert [c.url for c in found] == ["http://img.example/fox1.jpg", "http://img.example/fox2.jpg"]
    assert found[0].alt_texts == ("Red fox in snow",) and (found[0].width, found[0].height) == (1024, 768)
    assert (
        found[0].query_ids == (FOX.id,)
        and found[0].entity_ids == ("Q8332",)
        and found[0].backend == "searxng"
    )
    first = apis.requests[0]["params"]
    assert first["format"] == "json" and first["categories"] == "images"
    # SearXNG has no exclusion parameter: the terms are dropped, not pasted into the text
    # (engines that do not honour "-term" would read "drawing cartoon" as wanted words)
    assert first["q"] == "red fox"


def test_each_backend_sends_only_the_modifiers_its_api_expresses(apis, monkeypatch, tmp_path):
    from entitynet.harvest import SearchSpec
    from entitynet.search.base import dropped_modifiers, sendable

    monkeypatch.setenv("GOOGLE_CSE_KEY", "k")
    monkeypatch.setenv("GOOGLE_CSE_CX", "cx")
    monkeypatch.setenv("BRAVE_API_KEY", "bk")
    searx = SearXNG(apis.base + "/searxng", **FAST)
    google = GoogleCSE(url=apis.base + "/google/customsearch/v1", **FAST)
    brave = Brave(url=apis.base + "/brave/images", **FAST)
    for backend in (searx, google, brave):
        cached_search(backend, FOX, SearchCache(tmp_path / backend.name))
    by_path = {r["path"]: r["params"] for r in apis.requests}
    assert by_path["/searxng/search"]["q"] == "red fox"
    assert by_path["/brave/images"]["q"] == "red fox" and "exclude" not in str(by_path["/brave/images"])
    g = by_path["/google/customsearch/v1"]
    assert (g["q"], g["excludeTerms"], g["orTerms"], g["imgType"]) == (
        "red fox",
        "drawing cartoon",
        "Vulpes vulpes",
        "photo",
    )
    # the cache is keyed by what is sent: for searxng, queries that differ only in what it drops share it
    n = len(apis.requests)
    plain = Query(id="plain", text=FOX.text, kind=FOX.kind, entity_ids=("Q8332",), photo_type=None)
    assert [c.url for c in cached_search(searx, plain, SearchCache(tmp_path / "searxng"))] == [
        "http://img.example/fox1.jpg",
        "http://img.example/fox2.jpg",
    ]
    assert len(apis.requests) == n
    assert sendable(FOX, google.modifiers) == FOX
    assert dropped_modifiers([FOX, plain], searx.modifiers) == {
        "exclude_terms": 1,
        "or_terms": 1,
        "photo_type": 1,
    }
    assert SearchSpec("google-cse").modifiers() == google.modifiers
    assert SearchSpec("searxng", url="http://x").modifiers() == frozenset()


def test_google_cse_maps_the_modifiers(apis, monkeypatch):
    monkeypatch.setenv("GOOGLE_CSE_KEY", "k123")
    monkeypatch.setenv("GOOGLE_CSE_CX", "cx9")
    (c,) = GoogleCSE(url=apis.base + "/google/customsearch/v1", **FAST).search(FOX)
    assert (c.url, c.page_url, c.width, c.height) == (
        "http://img.example/g1.jpg",
        "http://page.example/g",
        800,
        600,
    )
    p = apis.requests[0]["params"]
    assert (p["key"], p["cx"], p["searchType"], p["imgType"]) == ("k123", "cx9", "image", "photo")
    assert p["excludeTerms"] == "drawing cartoon" and p["orTerms"] == "Vulpes vulpes" and p["q"] == "red fox"


def test_brave(apis, monkeypatch):
    monkeypatch.setenv("BRAVE_API_KEY", "bk")
    (c,) = Brave(url=apis.base + "/brave/images", **FAST).search(FOX)
    assert (c.url, c.page_url, c.alt_texts, c.width) == (
        "http://img.example/b1.jpg",
        "http://page.example/br",
        ("Fox portrait",),
        640,
    )
    assert apis.requests[0]["headers"]["X-Subscription-Token"] == "bk"


def test_missing_keys_are_config_errors(monkeypatch):
    monkeypatch.delenv("BRAVE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_CSE_KEY", raising=False)
    with pytest.raises(ConfigError, match="BRAVE_API_KEY"):
        Brave()
    with pytest.raises(ConfigError, match="GOOGLE_CSE_KEY"):
        GoogleCSE()


def test_retries_then_clear_errors(apis):
    apis.script = ["429"]
    assert len(SearXNG(apis.base + "/searxng", **FAST).search(FOX)) == 2
    apis.script = ["html"] * 3
    with pytest.raises(SearchError, match="failed after 3 attempts, last: answer is not JSON"):
        SearXNG(apis.base + "/searxng", **FAST).search(FOX)
    apis.script = ["403"]
    with pytest.raises(SearchError, match="HTTP 403"):
        SearXNG(apis.base + "/searxng", **FAST).search(FOX)
    with pytest.raises(SearchError, match="without a 'results' list"):
        SearXNG(apis.base + "/wrongshape", **FAST).search(FOX)
    with pytest.raises(SearchError, match="HTTP 404"):
        SearXNG(apis.base + "/nothing-here", **FAST).search(FOX)


def test_cache_means_no_second_search(apis, tmp_path):
    backend = SearXNG(apis.base + "/searxng", **FAST)
    cache = SearchCache(tmp_path)
    first = cached_search(backend, FOX, cache)
    n = len(apis.requests)
    other = Query(
        id="other-id",
        text=FOX.text,
        kind=FOX.kind,
        entity_ids=("Q1",),
        exclude_terms=FOX.exclude_terms,
        or_terms=FOX.or_terms,
    )
    again = cached_search(backend, other, cache)
    assert len(apis.requests) == n  # answered from disk
    assert [c.url for c in again] == [c.url for c in first]
    assert again[0].query_ids == ("other-id",) and again[0].entity_ids == ("Q1",)


def test_commons_uses_file_page_text(apis):
    fox = Entity(
        id="Q8332",
        label="red fox",
        image="http://commons.wikimedia.org/wiki/Special:FilePath/Vulpes_vulpes_laying_in_snow.jpg",
    )
    (c,) = Commons([fox], api_url=apis.base + "/commons/api.php", **FAST).search(FOX)
    assert c.url.startswith(
        "https://commons.wikimedia.org/wiki/Special:FilePath/Vulpes_vulpes_laying_in_snow.jpg"
    )
    assert c.page_url == "https://commons.wikimedia.org/wiki/File:Vulpes_vulpes_laying_in_snow.jpg"
    assert c.alt_texts == ("A red fox ( Vulpes vulpes )", "Red fox")
    assert apis.requests[0]["params"]["titles"] == "File:Vulpes vulpes laying in snow.jpg"
    offline = Commons([fox], api_url=None).search(FOX)
    assert offline[0].alt_texts == ("Vulpes vulpes laying in snow",)
    alias = Query(id="a", text="fox", kind="alias", entity_ids=("Q8332",))
    assert Commons([fox], api_url=None).search(alias) == []
    assert file_name("http://x/Special:FilePath/A%C3%A9_b.jpg") == "Aé b.jpg"


def test_merge_candidates_one_per_url():
    a = Candidate(
        url="http://i/1.jpg", alt_texts=("fox",), query_ids=("q2",), entity_ids=("Q2",), backend="s"
    )
    b = Candidate(
        url="http://i/1.jpg",
        page_url="http://p/1",
        alt_texts=("red fox", "fox"),
        query_ids=("q1",),
        entity_ids=("Q1",),
        width=640,
        backend="s",
    )
    c = Candidate(url="http://i/0.jpg", query_ids=("q1",), backend="s")
    merged = merge_candidates([a, b, c])
    assert [m.url for m in merged] == ["http://i/0.jpg", "http://i/1.jpg"]
    m = merged[1]
    assert m.alt_texts == ("fox", "red fox") and m.query_ids == ("q1", "q2") and m.entity_ids == ("Q1", "Q2")
    assert m.page_url == "http://p/1" and m.width == 640
    assert merge_candidates([b, a, c]) == merged


def test_matching_is_whole_words_and_case_insensitive():
    m = Matcher(["red fox", "fox", "C. elegans"], ["A", "B", "C"])
    assert m.find("A Red Fox, sleeping.") == {"A", "B"}
    assert m.find("foxglove in bloom") == set()
    assert m.find("the worm c. elegans") == {"C"}
    assert normalise("Red-Fox!") == " red - fox ! "


def test_pool_formats_and_matching(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"url": "http://i/1.jpg", "caption": "A red fox in the snow", "page_url": "http://p/1"},
        {"url": "http://i/2.jpg", "caption": "foxglove flowers"},
        {"url": "http://i/3.jpg", "caption": "Vulpes vulpes at dusk"},
    ]
    (tmp_path / "pool.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(
        pa.Table.from_pylist([{"url": r["url"], "text": r["caption"]} for r in rows]),
        tmp_path / "pool.parquet",
    )
    (tmp_path / "pool.csv").write_text("url,text\n" + "\n".join(f'{r["url"]},"{r["caption"]}"' for r in rows))
    for name in ("pool.jsonl", "pool.parquet", "pool.csv"):
        assert [u for u, _, _ in read_pool(tmp_path / name)] == [
            "http://i/1.jpg",
            "http://i/2.jpg",
            "http://i/3.jpg",
        ]
    alias = Query(id="qa", text="Vulpes vulpes", kind="alias", entity_ids=("Q8332",))
    attr = Query(id="qb", text="snow", kind="attribute", entity_ids=("Q8332",))
    pool = Pool(tmp_path / "pool.jsonl", [FOX, alias, attr])
    assert [c.url for c in pool.search(FOX)] == ["http://i/1.jpg"]
    assert pool.search(FOX)[0].page_url == "http://p/1"
    assert [c.url for c in pool.search(alias)] == ["http://i/3.jpg"]
    assert pool.search(attr) == []  # only names match a pool
    assert (pool.rows, pool.matched_rows) == (3, 2)
    (tmp_path / "bad.csv").write_text("link,words\nx,y\n")
    with pytest.raises(ConfigError, match="no url column"):
        list(read_pool(tmp_path / "bad.csv"))
    with pytest.raises(ConfigError, match="unsupported file type"):
        list(read_pool(tmp_path / "pool.xlsx"))
    assert Counter(parse_size(x) for x in ("800x600", "800 × 600", "big", None)) == {(800, 600): 2, (0, 0): 2}


NAMES = ["red fox", "Straße", "ﬁsh", "o'brien", "İzmir cat", "c. elegans", "ant", "Vulpes vulpes"]
PIECES = NAMES + [
    "STRASSE",
    "FISH",
    "O ' BRIEN",
    "i̇zmir\tcat",
    "C.ELEGANS",
    "pants",
    "a",
    " ",
    "\x00",
    "\n",
    "-",
    "!",
    "ß",
    "ﬁ",
    "Σ",
    "x\x1cy",
    "redfox",
    "RED\u00a0FOX",
    "vulpes  vulpes",
]


def _pool_queries():
    return [Query(id=f"q{i}", text=n, kind="noun", entity_ids=(f"Q{i}",)) for i, n in enumerate(NAMES)]


def _batch_matches_rows(texts: list[str | None]) -> None:
    import pyarrow as pa

    from entitynet.search.pool import PoolMatcher, pool_names

    m = PoolMatcher(pool_names(_pool_queries()))
    urls = [f"http://i/{i}.jpg" for i in range(len(texts))]
    exact = [m.candidate(u, t or "", "") for u, t in zip(urls, texts, strict=True)]
    batch = (pa.array(urls, pa.string()), pa.array(texts, pa.string()), pa.nulls(len(texts), pa.string()))
    assert list(m.candidates(*batch)) == [c for c in exact if c is not None]


def test_batch_matching_with_the_prefilter_finds_what_row_by_row_matching_finds():
    """The pool's fast path (a prefilter over the whole batch in Arrow, then the exact matcher on
    the rows it passes) against the exact matcher on every row: case folding that changes the
    length (ß -> ss), ligatures, dotted İ, punctuation, separators and nulls inside texts."""
    texts = [
        "A red fox",
        "Reading a STRASSE map",
        "ﬁsh and chips",
        "O'Brien's dog",
        "redfox",
        None,
        "",
        "\x00red fox\x00",
        "i̇zmir cat",
        "C. Elegans worm",
        "ants",
        "the ant.",
        "Vulpes\nvulpes",
        "ß" * 50,
    ]
    _batch_matches_rows(texts)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=8).map("".join), max_size=30)
)
def test_batch_matching_agrees_with_row_matching_on_arbitrary_texts(texts):
    _batch_matches_rows(texts)


# ---------------------------------------------------------------- hostile APIs: time and size


def test_a_trickling_api_is_cut_off_at_the_total_deadline(hostile):
    tried("search api", 2)
    server = hostile
    for path in ("/trickle-body", "/trickle-headers"):
        backend = SearXNG(server.base + path, requests_per_second=0, timeout=5.0, total_timeout=1.5)
        t = time.monotonic()
        with pytest.raises(SearchError) as e:
            backend.search(FOX)
        assert time.monotonic() - t < 2.5  # the server would trickle for 25-30 s
        assert "gave no whole answer within its total timeout of 1.5 s" in str(e.value)
        assert "\n" not in str(e.value)


def test_an_endless_api_answer_stops_at_the_size_cap(hostile):
    tried("search api", 2)
    server = hostile
    api = JsonApi("test", requests_per_second=0, max_bytes=1 << 20)
    with pytest.raises(
        SearchError,
        match=r"grew past the cap of 1 MiB \(reading stopped there\) for one page of results; ask for fewer",
    ):
        api.get(server.base + "/endless/search", {"q": "fox"})
    assert server.handler.done.wait(10) and sum(server.handler.sent) < 48 << 20
    with pytest.raises(SearchError, match="announced 314,572,800 bytes, over the cap of 32 MiB"):
        JsonApi("test", requests_per_second=0).get(server.base + "/announced/search", {})
