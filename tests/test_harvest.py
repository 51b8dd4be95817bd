"""The harvest pipeline against the sample web: every candidate accounted for, shards readable by
TFDS and Grain, exact duplicates merged, a re-run reproducing the same shards from the search cache."""

import json
import time
from collections import Counter

import pytest
from factories import record
from loopback_hosts import CountingHosts

from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest
from entitynet.curation.plan import CurateOptions
from entitynet.errors import ConfigError, EntityNetError
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.images.process import REASONS
from entitynet.records import ImageRecord
from entitynet.sampleweb.server import SampleWeb
from entitynet.shards import iter_records, shard_paths
from entitynet.text.queries import build_queries

FETCH_REASONS = {
    "http_404",
    "http_429",
    "http_5xx",
    "timeout",
    "connection_error",
    "too_large",
    "not_an_image",
    "opted_out",
    "robots_disallowed",
    "blocked_address",
    "redirect_loop",
    "bad_url",
    "bad_encoding",
    "robots_unavailable",
}


def options(**kw):
    fetch = FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01, retries=1)
    return harvest.HarvestOptions(fetch=fetch, num_shards=2, **kw)


@pytest.fixture(scope="module")
def small_world(sample_entities):
    entities = sample_entities[:15]
    return entities, build_queries(entities)


@pytest.fixture(scope="module")
def harvested(small_world, tmp_path_factory):
    entities, queries = small_world
    out = tmp_path_factory.mktemp("harvest")
    with SampleWeb(entities, seed=5) as web:
        spec = harvest.SearchSpec(url=web.base_url, max_results=10, requests_per_second=0)
        stats = harvest_pipeline.run(queries, spec, options(), str(out))
        port = web.server.server_address[1]
    return out, stats, spec, port


def test_every_candidate_has_exactly_one_outcome(harvested):
    out, stats, _, _ = harvested
    candidates = harvest.read_candidates(str(out))
    assert len({c.url for c in candidates}) == len(candidates) == stats["candidates"] > 50
    assert sum(stats["per_outcome"].values()) == stats["candidates"]
    assert set(stats["per_outcome"]) <= {"written", "duplicate"} | FETCH_REASONS | set(REASONS)
    assert {"written", "http_404"} <= set(stats["per_outcome"])
    outcomes = harvest.read_outcomes(str(out))
    assert sorted(o.url for o in outcomes) == sorted(c.url for c in candidates)  # one each
    assert Counter(o.outcome for o in outcomes) == stats["per_outcome"]
    failed = {o.url for o in outcomes if o.outcome not in ("written", "duplicate")}
    records = [r for split in ("train", "validation", "test") for r in iter_records(out, split)]
    written = {r.url for r in records}
    assert len(written) == stats["written"] == sum(stats["per_split"].values())
    assert not (failed & written) and failed | written == {c.url for c in candidates}
    assert all(h["urls"] >= h["written"] for h in stats["per_host"].values())
    per_shard = [json.loads(p.read_text()) for p in sorted((out / "shard_stats").glob("*.json"))]
    assert sum(s["records"] for s in per_shard) == stats["written"]


def test_shards_load_through_tfds_and_grain(harvested, small_world):
    import grain
    import tensorflow_datasets as tfds

    out, stats, _, _ = harvested
    train = tfds.builder_from_directory(str(out)).as_data_source("train")
    assert len(train) == stats["per_split"]["train"]
    ex = train[0]
    assert ex["image"].ndim == 3 and min(ex["image"].shape[:2]) == 256
    source = grain.sources.ArrayRecordDataSource([str(p) for p in shard_paths(out, "train")])
    assert len(source) == len(train)
    entity_ids = {e.id for e in small_world[0]}
    for r in iter_records(out, "train"):
        assert set(r.entity_ids) <= entity_ids and r.query_ids and r.key == r.sha256[:32]


def test_rerun_reuses_searches_and_fetches_and_writes_identical_shards(harvested, small_world):
    out, stats, spec, port = harvested
    entities, queries = small_world
    before = {p.name: p.read_bytes() for p in out.glob("entitynet-*")}
    records_before = {r.key: r for r in iter_records(out, "train")}
    with SampleWeb(entities, seed=5, port=port) as web:  # the same web at the same address
        again = harvest_pipeline.run(queries, spec, options(), str(out))
        assert web.requests == 0  # searches from the cache, fetches from the finished work units
    assert again["reused_from_earlier_run"] == stats["candidates"]
    assert again["per_outcome"] == stats["per_outcome"]
    assert {r.key: r for r in iter_records(out, "train")} == records_before
    assert {p.name: p.read_bytes() for p in out.glob("entitynet-*")} == before  # byte for byte
    assert len(list((out / "search_cache").glob("searxng-*.json"))) == len(queries)
    assert not list(out.glob("*.tmp-*")) and not list(out.glob("*.staged-*"))


def test_retry_failed_refetches_only_transient_failures(harvested, small_world):
    out, stats, spec, port = harvested
    entities, queries = small_world
    transient = sum(
        n
        for reason, n in stats["per_outcome"].items()
        if reason in ("http_5xx", "http_429", "timeout", "connection_error")
    )
    assert transient > 0
    with SampleWeb(entities, seed=5, port=port) as web:
        again = harvest_pipeline.run(queries, spec, options(retry_failed=True), str(out))
        assert transient <= web.requests <= 1 + 2 * transient  # robots.txt, then each failure (1 retry)
    assert again["reused_from_earlier_run"] == stats["candidates"] - transient
    assert again["per_outcome"] == stats["per_outcome"]  # the sample web's 500s are permanent


@pytest.mark.slow
def test_output_in_a_bucket(harvested, small_world, tmp_path, bucket, object_store_server):
    """`--out` on an object store (a real S3 server on loopback): the same shards as a local run,
    readable from the bucket; a re-run finds its search cache and work units there."""
    from entitynet.storage import STORE

    out, stats, spec, port = harvested
    entities, queries = small_world
    remote = f"{bucket}/harvest"
    with SampleWeb(entities, seed=5, port=port) as web:
        got = harvest_pipeline.run(queries, spec, options(), remote)
        assert web.requests > 0
    assert got["per_outcome"] == stats["per_outcome"]
    keys = [k.removeprefix("harvest/") for k in object_store_server.keys(remote)]
    shards_local = {p.name: p.read_bytes() for p in out.glob("entitynet-*")}
    assert {k: STORE.read(f"{remote}/{k}") for k in keys if k.startswith("entitynet-")} == shards_local
    assert {
        "dataset_info.json",
        "features.json",
        "harvest_stats.json",
        "DATACARD.md",
        "harvest_config.json",
    } <= set(keys)
    assert any(k.startswith("plots/") for k in keys) and any(k.startswith("shard_stats/") for k in keys)
    for kind in ("candidates", "outcomes", "hosts"):
        assert sorted(k for k in keys if k.startswith(kind + "/")) == got["files"][kind]
    assert sum(k.startswith("fetch_work/") and "/unit-" in k for k in keys) > 0
    assert sum(k.startswith("search_cache/searxng-") for k in keys) == len(queries)
    assert not [k for k in keys if ".tmp-" in k or ".staged-" in k]
    assert [r.key for r in iter_records(remote, "train")] == [r.key for r in iter_records(out, "train")]
    with SampleWeb(entities, seed=5, port=port) as web:
        again = harvest_pipeline.run(queries, spec, options(), remote)
        assert web.requests == 0
    assert again["reused_from_earlier_run"] == stats["candidates"]


def test_unknown_remote_scheme_is_one_clear_error(small_world):
    with pytest.raises(EntityNetError, match="no filesystem for nosuch://"):
        harvest_pipeline.run(
            small_world[1], harvest.SearchSpec(url="http://127.0.0.1:9"), options(), "nosuch://b/x"
        )


KILLED_RUN = """
import json, sys
from beam_pipelines import harvest as hp
from entitynet import harvest
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.records import Query, from_json
args = json.loads(sys.argv[1])
queries = [from_json(Query, line) for line in open(args["queries"])]
opts = harvest.HarvestOptions(fetch=FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01,
                              retries=1), num_shards=2, threads=2, save_every=4)
hp.run(queries, harvest.SearchSpec(url=args["url"], max_results=10, requests_per_second=0), opts, args["out"])
"""


@pytest.mark.slow
def test_sigkill_at_any_point_then_rerun_gives_the_uninterrupted_shards(harvested, small_world, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from entitynet.records import write_jsonl

    out, stats, spec, port = harvested
    entities, queries = small_world
    qfile = tmp_path / "queries.jsonl"
    write_jsonl(qfile, queries)
    killed = tmp_path / "killed"
    with SampleWeb(entities, seed=5, port=port, delay=0.05) as web:
        arg = json.dumps({"queries": str(qfile), "url": web.base_url, "out": str(killed)})
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, arg],
            cwd=os.getcwd(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and len(
                list((killed / "fetch_work").glob("*/unit-*.unit"))
                if (killed / "fetch_work").exists()
                else []
            )
            < 15
        ):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = len(list((killed / "fetch_work").glob("*/unit-*.unit")))
        assert 0 < done and not (killed / "dataset_info.json").exists()  # killed mid-fetch
        web.delay = 0
        again = harvest_pipeline.run(queries, spec, options(), str(killed))
    assert 0 < again["reused_from_earlier_run"] < again["candidates"]
    assert again["per_outcome"] == stats["per_outcome"]
    for split in ("train", "validation", "test"):
        assert {r.key: r for r in iter_records(killed, split)} == {r.key: r for r in iter_records(out, split)}
    assert not list(killed.rglob("*.tmp-*")) and not list(killed.glob("*.staged-*"))


def test_exact_duplicates_are_merged(small_world, tmp_path):
    entities, queries = small_world
    with SampleWeb(entities, seed=5) as web:
        good = [
            im for im in web.corpus if im.entity_id == entities[3].id and not im.fault and im.width > 100
        ][:3]
        rows = []
        for im in good:
            for mirror in ("", "?mirror=1"):  # the same bytes at two URLs
                rows.append(
                    {
                        "url": f"{web.base_url}/img/{im.id}.jpg{mirror}",
                        "text": f"{entities[3].label} {mirror}",
                    }
                )
        pool = tmp_path / "pool.jsonl"
        pool.write_text("\n".join(json.dumps(r) for r in rows))
        spec = harvest.SearchSpec(backend="pool", pool=str(pool))
        stats = harvest_pipeline.run(queries, spec, options(), str(tmp_path / "out"))
    assert stats["per_outcome"] == {"written": 3, "duplicate": 3}
    records = [r for s in ("train", "validation", "test") for r in iter_records(tmp_path / "out", s)]
    assert len(records) == 3 and all(len(r.urls) == 2 for r in records)


def test_merge_duplicates_function():
    a = record("k", "http://b/x", jpeg=b"1", alt_texts=("b",), query_ids=("q2",), entity_ids=("Q2",))
    b = record(
        "k",
        "http://a/x",
        jpeg=b"1",
        page_url="http://a/",
        alt_texts=("a",),
        query_ids=("q1",),
        entity_ids=("Q1",),
    )
    merged, dups = harvest.merge_duplicates([a, b])
    assert merged.url == "http://a/x" and merged.alt_texts == ("a", "b") and merged.entity_ids == ("Q1", "Q2")
    assert merged.urls == ("http://a/x", "http://b/x")
    assert [(d.url, d.outcome) for d in dups] == [("http://b/x", "duplicate")]


def test_bad_harvest_input(tmp_path):
    with pytest.raises(ConfigError, match="needs --searxng-url"):
        harvest.SearchSpec(backend="searxng")
    with pytest.raises(ConfigError, match="unknown search backend"):
        harvest.SearchSpec(backend="bing", url="http://x")
    with pytest.raises(ConfigError, match="split fractions"):
        harvest.HarvestOptions(splits=(("train", 0.5),))
    with pytest.raises(EntityNetError, match="no queries"):
        harvest_pipeline.run([], harvest.SearchSpec(url="http://127.0.0.1:9"), options(), str(tmp_path))


def test_data_card(harvested):
    from PIL import Image

    out, stats, _, _ = harvested
    card = (out / "DATACARD.md").read_text()
    assert f"written: {stats['written']:,}" in card and "| http_404 |" in card
    for name in ("images_per_entity", "outcomes", "success_per_host", "image_sizes"):
        assert f"plots/{name}.png" in card
        with Image.open(out / "plots" / f"{name}.png") as im:
            assert im.format == "PNG" and im.width > 200
    records = [r for s in ("train", "validation", "test") for r in iter_records(out, s)]
    assert sum(stats["per_entity"].values()) == sum(len(r.entity_ids) for r in records)
    assert sum(n for _, _, n in stats["size_bins"]["counts"]) == len(records)
    assert Counter((r.width // 16 * 16, r.height // 16 * 16) for r in records) == {
        (w, h): n for w, h, n in stats["size_bins"]["counts"]
    }


def test_the_pipeline_survives_a_hostile_web(tmp_path, small_world):
    """Every fault of the fetch tests, through the whole pipeline: no crash, every URL accounted for."""
    from test_fetch import HostileWeb

    _, queries = small_world
    web = HostileWeb()
    try:
        paths = [
            "/img.jpg",
            "/to-img",
            "/404",
            "/always500",
            "/html",
            "/html-as-jpeg",
            "/big",
            "/bigchunked",
            "/loop",
            "/to-private",
            "/to-metadata",
            "/noai",
            "/scoped-us",
            "/private-area/ok.jpg",
            "/trickle",
            "/reset",
            "/429",
        ]
        name = queries[0].text
        pool = tmp_path / "pool.jsonl"
        pool.write_text("\n".join(json.dumps({"url": web.base + p, "text": f"{name} {p}"}) for p in paths))
        fetch = FetchOptions(
            address=AddressPolicy(allow_loopback=True),
            backoff=0.01,
            retries=1,
            total_timeout=2.0,
            read_timeout=1.0,
            max_bytes=1 << 20,
        )
        opts = harvest.HarvestOptions(fetch=fetch, num_shards=1)
        stats = harvest_pipeline.run(
            queries, harvest.SearchSpec(backend="pool", pool=str(pool)), opts, str(tmp_path / "out")
        )
    finally:
        web.close()
    assert stats["candidates"] == len(paths) and sum(stats["per_outcome"].values()) == len(paths)
    by_url = {
        o.url.removeprefix(web.base): o.outcome
        for o in harvest.read_outcomes(str(tmp_path / "out"))
        if o.outcome not in ("written", "duplicate")
    }
    assert by_url == {
        "/404": "http_404",
        "/always500": "http_5xx",
        "/html": "not_an_image",
        "/html-as-jpeg": "not_an_image",
        "/big": "too_large",
        "/bigchunked": "too_large",
        "/loop": "redirect_loop",
        "/to-private": "blocked_address",
        "/to-metadata": "blocked_address",
        "/noai": "opted_out",
        "/scoped-us": "opted_out",
        "/private-area/ok.jpg": "robots_disallowed",
        "/trickle": "timeout",
        "/reset": "connection_error",
    }
    # the same JPEG at /img.jpg, /to-img (a redirect) and /429 (after Retry-After): one record, two duplicates
    assert stats["per_outcome"]["written"] == 1 and stats["per_outcome"]["duplicate"] == 2


@pytest.mark.slow
def test_multi_process_runner_gives_the_same_stats_and_files(harvested, small_world, tmp_path):
    """The counts are combined across worker processes, not gathered: the multi-process DirectRunner
    gives the in-memory run's stats, outcome files and candidate files."""
    out, stats, spec, port = harvested
    entities, queries = small_world
    other = tmp_path / "mp"
    with SampleWeb(entities, seed=5, port=port):
        mp = harvest_pipeline.run(
            queries,
            spec,
            options(),
            str(other),
            ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        )
    for key in (
        "candidates",
        "written",
        "per_outcome",
        "per_entity",
        "links",
        "per_split",
        "per_host",
        "size_bins",
    ):
        assert mp[key] == stats[key], key
    assert mp["files"] == stats["files"]
    for kind in ("candidates", "outcomes", "hosts"):
        for name in stats["files"][kind]:
            assert (other / name).read_bytes() == (out / name).read_bytes(), name


def _pool_world(small_world, web, directory):
    """The sample web's images as a pool: 3 Parquet files of 2 row groups each and a JSONL file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    entities, _ = small_world
    rows = [
        {
            "url": f"{web.base_url}/img/{im.id}.jpg",
            "text": f"a photo of a {web.labels.get(im.entity_id, 'thing')}",
        }
        for im in web.corpus
        if im.entity_id and not im.fault
    ][:120]
    rows += [{"url": f"{web.base_url}/img/none-{i}.jpg", "text": "nothing we know"} for i in range(20)]
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        part = rows[i::4]
        pq.write_table(
            pa.Table.from_pylist(part), directory / f"part-{i}.parquet", row_group_size=max(1, len(part) // 2)
        )
    (directory / "extra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3::4]))
    return rows


@pytest.mark.slow
def test_a_pool_of_several_files_and_globs_is_read_in_parallel_units(small_world, tmp_path, bucket):
    from entitynet.search.pool import Pool, pool_files, pool_units
    from entitynet.storage import STORE

    entities, queries = small_world
    with SampleWeb(entities, seed=5) as web:
        rows = _pool_world(small_world, web, tmp_path / "pool")
        patterns = (str(tmp_path / "pool" / "*.parquet"), str(tmp_path / "pool" / "extra.jsonl"))
        assert len(pool_files(patterns)) == 4 and len(pool_units(pool_files(patterns))) >= 7  # row groups
        spec = harvest.SearchSpec(backend="pool", pool=patterns)
        local = harvest_pipeline.run(queries, spec, options(), str(tmp_path / "out"))
        # the same pool in a bucket
        for p in (tmp_path / "pool").iterdir():
            STORE.upload(p, f"{bucket}/pool/{p.name}")
        remote_spec = harvest.SearchSpec(
            backend="pool", pool=(f"{bucket}/pool/*.parquet", f"{bucket}/pool/extra.jsonl")
        )
        remote = harvest_pipeline.run(queries, remote_spec, options(), str(tmp_path / "out2"))
    # what the in-memory pool search finds, query by query
    pool = Pool(patterns[0], queries)
    pool_jsonl = Pool(patterns[1], queries)
    found = {c.url for q in queries for c in pool.search(q) + pool_jsonl.search(q)}
    assert pool.rows + pool_jsonl.rows == len(rows)
    got = {c.url for c in harvest.read_candidates(str(tmp_path / "out"))}
    assert got == found and len(got) >= 50
    assert {c.url for c in harvest.read_candidates(str(tmp_path / "out2"))} == got
    assert remote["per_outcome"] == local["per_outcome"]
    with pytest.raises(ConfigError, match="matches no file"):
        harvest_pipeline.run(
            queries,
            harvest.SearchSpec(backend="pool", pool=str(tmp_path / "no*.parquet")),
            options(),
            str(tmp_path / "o3"),
        )


@pytest.mark.slow
def test_balance_before_fetching_keeps_what_curate_keeps(small_world, tmp_path):
    """MetaCLIP's order for pools: `--balance-t` draws before fetching and keeps exactly the images
    `curate --t` keeps from the whole pool with the same seed; the rest is never fetched."""
    import io

    from PIL import Image

    from beam_pipelines import curate
    from entitynet.curation import balance
    from entitynet.curation.metadata import EntityMetadata

    entities, queries = small_world
    T, seed = 3, 11
    splits = ("train", "validation", "test")
    with SampleWeb(entities, seed=5) as web:
        by_entity: dict[str, list] = {}
        for im in web.corpus:
            w, h = Image.open(io.BytesIO(web.jpeg(im.id))).size
            if im.entity_id and not im.fault and min(w, h) >= 64 and max(w, h) <= 3 * min(w, h):
                by_entity.setdefault(im.entity_id, []).append(im)  # an image the harvest writes
        rows = []  # a long tail: the i-th entity brings 1 + 2i of its images
        for i, (e, images) in enumerate(sorted(by_entity.items())):
            rows += [
                {"url": f"{web.base_url}/img/{im.id}.jpg", "text": f"a photo of a {web.labels[e]}"}
                for im in images[: 1 + 2 * i]
            ]
        pool = tmp_path / "pool.jsonl"
        pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
        spec = harvest.SearchSpec(backend="pool", pool=str(pool), entities=tuple(entities))
        full = harvest_pipeline.run(queries, spec, options(), str(tmp_path / "full"), entities=entities)
        balanced_spec = harvest.SearchSpec(
            backend="pool", pool=str(pool), entities=tuple(entities), balance_t=T, balance_seed=seed
        )
        requested = web.image_requests
        pre = harvest_pipeline.run(
            queries, balanced_spec, options(), str(tmp_path / "pre"), entities=entities
        )
        image_hits = web.image_requests - requested
    assert full["candidates"] == len(rows), full["per_outcome"]
    assert full["written"] == len(rows), full["per_outcome"]  # distinct images, all fetched
    curated = curate.run(
        str(tmp_path / "full"),
        entities,
        [],
        CurateOptions(t=T, seed=seed, near_dup_threshold=None, balance_splits=splits),
        str(tmp_path / "curated"),
    )
    kept_by_curate = {r.url for s in splits for r in iter_records(str(tmp_path / "curated"), s)}
    kept_before_fetch = {r.url for s in splits for r in iter_records(str(tmp_path / "pre"), s)}
    assert kept_before_fetch == kept_by_curate
    assert len(by_entity) // 2 < len(kept_by_curate) < len(rows) // 2  # balancing did cut the head
    pb = pre["pool_balance"]
    assert pb["balanced_out"] == len(rows) - len(kept_before_fetch) == curated["removed"]["balanced_out"]
    assert pb["fetches_saved"] == pb["balanced_out"] and pre["fetched"] == len(kept_before_fetch)
    assert image_hits == len(kept_before_fetch)  # the balanced-out rows were never requested
    # the per-entry counts, before and after, as curate counts them
    meta = EntityMetadata(entities)
    counts = Counter(e for r in rows for e in meta.entries([r["text"]], []))
    tsv = (tmp_path / "pre" / "pool_balance.tsv").read_text().splitlines()
    assert tsv[0] == "entity\tlabel\tbefore\tafter"
    table = {line.split("\t")[0]: line.split("\t")[2:] for line in tsv[1:]}
    assert {e: int(b) for e, (b, _) in table.items()} == dict(counts)
    assert pb["before"] == balance.head_tail(dict(counts), T) and pb["before"]["head_entries"] > 0
    curated_tsv = (tmp_path / "curated" / "entry_counts.tsv").read_text().splitlines()[1:]
    assert {e: a for e, (_, a) in table.items()} == {x.split("\t")[0]: x.split("\t")[3] for x in curated_tsv}
    outcomes = Counter(o.outcome for o in harvest.read_outcomes(str(tmp_path / "pre")))
    assert outcomes == {"written": len(kept_before_fetch), "balanced_out": pb["balanced_out"]}
    with pytest.raises(ConfigError, match="--balance-t needs --entities"):
        harvest.SearchSpec(backend="pool", pool=str(pool), balance_t=T)
    with pytest.raises(ConfigError, match="balances a pool before fetching"):
        harvest.SearchSpec(backend="searxng", url="http://127.0.0.1:1", balance_t=T, entities=tuple(entities))


def test_fetch_threads_move_on_to_other_units_while_one_waits_for_a_stalled_url(tmp_path, loopback):
    """A worker's threads do not idle behind a unit's slowest URL: while one URL of the first unit
    stalls, the second unit's URLs are fetched, and both units come out, each with its results."""
    import io
    import threading

    from apache_beam.utils.windowed_value import WindowedValue
    from loopback import LoopbackHandler
    from PIL import Image

    from entitynet.records import Candidate

    log, lock = [], threading.Lock()

    def jpeg(i):
        buf = io.BytesIO()
        Image.new("RGB", (96, 80), (i * 20 % 256, 90, 160)).save(buf, "JPEG")
        return buf.getvalue()

    class Handler(LoopbackHandler):
        def do_GET(self):
            with lock:
                log.append(("start", self.path, time.monotonic()))
            if self.path == "/a/stall.jpg":
                time.sleep(1.5)
            self.send(200, jpeg(len(self.path)))
            with lock:
                log.append(("end", self.path, time.monotonic()))

    base = loopback(Handler).base
    opts = options(threads=4)
    fn = harvest_pipeline.FetchUnit(opts, str(tmp_path))
    fn.setup()
    fn.start_bundle()
    a = [Candidate(url=f"{base}/a/stall.jpg")] + [Candidate(url=f"{base}/a/{i}.jpg") for i in range(2)]
    b = [Candidate(url=f"{base}/b/{i}.jpg") for i in range(6)]
    out = list(fn.process((0, a), {})) + list(fn.process((1, b), {})) + list(fn.finish_bundle())
    fn.teardown()
    stall_end = next(t for kind, path, t in log if kind == "end" and path == "/a/stall.jpg")
    b_done = [t for kind, path, t in log if kind == "end" and path.startswith("/b/")]
    assert len(b_done) == 6 and max(b_done) < stall_end  # unit b was fetched during a's stall
    values = [o.value if isinstance(o, WindowedValue) else o for o in out]
    values = [v.value if hasattr(v, "tag") else v for v in values]
    recs = [v[1] for v in values if isinstance(v, tuple) and isinstance(v[1], ImageRecord)]
    assert sorted(r.url.split("/", 3)[3] for r in recs) == sorted(
        ["a/stall.jpg", "a/0.jpg", "a/1.jpg"] + [f"b/{i}.jpg" for i in range(6)]
    )


@pytest.mark.slow
def test_per_host_limits_hold_over_all_workers_counted_by_the_server(small_world, tmp_path):
    """Two worker processes, many requests in flight each, and a host big enough to be split into
    slots: no host ever sees more than --per-host-concurrency requests at once (counted by the
    server), and the big host does get that many (its slots run side by side)."""
    entities, queries = small_world
    web = CountingHosts(hosts=3, delay=0.3)
    try:
        urls = [web.url(1, i) for i in range(30)] + [
            web.url(h, 100 * h + i) for h in (2, 3) for i in range(8)
        ]
        pool = tmp_path / "pool.jsonl"
        pool.write_text("\n".join(json.dumps({"url": u, "text": entities[0].label}) for u in urls))
        fetch = FetchOptions(
            address=AddressPolicy(allow_loopback=True), per_host_concurrency=3, in_flight=64, retries=0
        )
        opts = harvest.HarvestOptions(fetch=fetch, num_shards=2, host_split=8)
        assert harvest.slots_for(30, 3, 8) == 3 and harvest.slots_for(8, 3, 8) == 1
        stats = harvest_pipeline.run(
            queries,
            harvest.SearchSpec(backend="pool", pool=str(pool)),
            opts,
            str(tmp_path / "out"),
            ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        )
    finally:
        web.close()
    assert stats["per_outcome"] == {"written": len(urls)} and web.served == len(urls)
    assert max(web.peak.values()) <= 3, web.peak
    assert web.peak["127.0.0.1"] == 3, web.peak  # three slots of the big host in flight together
