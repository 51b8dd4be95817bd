"""Re-runs into an existing output against the sample web: other options never reuse results made
under the old ones, another shard layout never leaves old files to be read, and two runs never
share one output (a lock; a killed holder's lock is taken over)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import tried
from test_harvest import KILLED_RUN

from beam_pipelines import curate as curate_pipeline
from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest, shards
from entitynet.curation.plan import CurateOptions
from entitynet.errors import OutputError
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.images.process import ImageOptions
from entitynet.locks import LOCK_NAME, OutputLock
from entitynet.records import SCHEMA_VERSION, write_jsonl
from entitynet.sampleweb.server import SampleWeb
from entitynet.text.queries import build_queries

SPLITS = ("train", "validation", "test")


def options(loopback=True, size=128, min_side=64, num_shards=2):
    fetch = FetchOptions(address=AddressPolicy(allow_loopback=loopback), backoff=0.01, retries=1)
    return harvest.HarvestOptions(
        fetch=fetch, image=ImageOptions(size=size, min_side=min_side), num_shards=num_shards
    )


def all_records(out):
    return [r for s in SPLITS for r in shards.iter_records(out, s)]


@pytest.fixture(scope="module")
def world(sample_entities):
    entities = sample_entities[:10]
    with SampleWeb(entities, seed=11) as web:
        spec = harvest.SearchSpec(url=web.base_url, max_results=8, requests_per_second=0)
        yield entities, build_queries(entities), spec, web


@pytest.mark.slow
def test_other_image_options_are_made_again_not_reused(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = str(tmp_path / "out")
    first = harvest_pipeline.run(queries, spec, options(size=128), out)
    assert first["written"] > 20 and {min(r.width, r.height) for r in all_records(out)} == {128}
    again = harvest_pipeline.run(queries, spec, options(size=200, min_side=200), out)
    assert again["reused_from_earlier_run"] == 0
    assert {"fetch.image.size", "fetch.image.min_side"} <= set(again["options_changed"])
    recs = all_records(out)
    assert len(recs) == again["written"] and {min(r.width, r.height) for r in recs} == {200}
    config = json.loads((tmp_path / "out" / "harvest_config.json").read_text())
    assert config["harvest"]["image"]["size"] == 200
    assert len(os.listdir(tmp_path / "out" / "fetch_work")) == 1  # units of the old options removed
    same = harvest_pipeline.run(queries, spec, options(size=200, min_side=200), out)
    assert same["reused_from_earlier_run"] == same["candidates"] and same["options_changed"] == []
    assert {r.key for r in all_records(out)} == {r.key for r in recs}


def test_allowing_loopback_after_a_refused_run_fetches_again(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = str(tmp_path / "out")
    refused = harvest_pipeline.run(queries[:20], spec, options(loopback=False), out)
    assert refused["written"] == 0 and set(refused["per_outcome"]) == {"blocked_address"}
    allowed = harvest_pipeline.run(queries[:20], spec, options(loopback=True), out)
    assert allowed["written"] > 5 and "blocked_address" not in allowed["per_outcome"]
    assert "fetch.fetch.address.allow_loopback" in allowed["options_changed"]


@pytest.mark.slow
def test_other_search_settings_search_again(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = str(tmp_path / "out")
    few = harvest_pipeline.run(queries[:20], spec, options(), out)
    more = harvest_pipeline.run(
        queries[:20], harvest.SearchSpec(url=spec.url, max_results=20, requests_per_second=0), options(), out
    )
    assert "search.max_results" in more["options_changed"]
    assert more["candidates"] > few["candidates"]


@pytest.mark.slow
def test_another_shard_layout_replaces_the_old_files(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = tmp_path / "out"
    harvest_pipeline.run(queries[:15], spec, options(num_shards=4), str(out))
    assert len(shards.shard_paths(out, "train")) == 4
    stats = harvest_pipeline.run(queries, spec, options(num_shards=2), str(out))
    names = sorted(p.name for p in out.iterdir() if shards.is_shard_name(p.name))
    assert names == sorted(shards.shard_filename(s, i, 2) for s in SPLITS for i in range(2))
    assert len(all_records(out)) == stats["written"]
    assert sorted(p.name for p in (out / "shard_stats").iterdir()) == [n + ".json" for n in names]
    assert sorted(n for n in stats["stale_removed"] if shards.is_shard_name(n)) == sorted(
        shards.shard_filename(s, i, 4) for s in SPLITS for i in range(4)
    )

    # curate reads what the metadata lists, and a curate re-run with another layout or output kind
    # leaves nothing of the old one
    cur = tmp_path / "curated"
    c4 = curate_pipeline.run(str(out), entities, [], CurateOptions(num_shards=3), str(cur))
    assert sum(c4["read"].values()) == stats["written"]
    curate_pipeline.run(str(out), entities, [], CurateOptions(num_shards=1), str(cur))
    assert sorted(p.name for p in cur.iterdir() if shards.is_shard_name(p.name)) == sorted(
        shards.shard_filename(s, 0, 1) for s in SPLITS
    )
    curate_pipeline.run(str(out), entities, [], CurateOptions(output="subset"), str(cur))
    left = {p.name for p in cur.iterdir()}
    assert "subset.npz" in left and not any(shards.is_shard_name(n) for n in left)
    assert "dataset_info.json" not in left


def test_a_reader_never_globs_files_the_metadata_does_not_list(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = tmp_path / "out"
    harvest_pipeline.run(queries[:15], spec, options(num_shards=2), str(out))
    want = {r.key for r in all_records(out)}
    # a stray shard of another layout (a copy) beside them is not read
    src = shards.shard_paths(out, "train")[0]
    (out / shards.shard_filename("train", 0, 5)).write_bytes(Path(src).read_bytes())
    assert {r.key for r in all_records(out)} == want
    os.remove(shards.shard_paths(out, "test")[1])
    with pytest.raises(Exception, match="lacks 1 shard file"):
        all_records(out)


@pytest.mark.slow
def test_a_second_run_into_the_same_output_is_refused_and_a_dead_holder_taken_over(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, web = world
    qfile = tmp_path / "queries.jsonl"
    write_jsonl(qfile, queries)
    out = tmp_path / "out"
    web.delay = 0.05
    try:
        arg = json.dumps({"queries": str(qfile), "url": spec.url, "out": str(out)})
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, arg], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / LOCK_NAME).exists():
            time.sleep(0.05)
        assert (out / LOCK_NAME).exists()
        started = time.monotonic()
        with pytest.raises(OutputError, match=rf"is in use by harvest run \w+ \(pid {proc.pid} on"):
            harvest_pipeline.run(queries, spec, options(size=256), str(out))
        assert time.monotonic() - started < 10  # at once, not after the other run
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        web.delay = 0
    assert (out / LOCK_NAME).exists()  # left by the killed run
    stats = harvest_pipeline.run(queries, spec, options(), str(out))
    assert stats["written"] > 20 and not (out / LOCK_NAME).exists()
    assert {min(r.width, r.height) for r in all_records(out)} == {128}
    assert not list(out.rglob("*.tmp-*")) and not list(out.glob("*.staged-*"))


def test_lock_unit(tmp_path):
    tried("re-run or concurrent run")
    with OutputLock(str(tmp_path), "curate") as held:
        doc = json.loads((tmp_path / LOCK_NAME).read_text())
        assert doc["pid"] == os.getpid() and doc["run_id"] == held.run_id
        with pytest.raises(OutputError, match="in use by curate run"), OutputLock(str(tmp_path), "curate"):
            pass
        held.check()
        (tmp_path / LOCK_NAME).write_text(json.dumps({**doc, "run_id": "someoneelse"}))
        with pytest.raises(OutputError, match="lost its lock"):
            held.check()
    assert (tmp_path / LOCK_NAME).exists()  # not ours any more: left alone
    (tmp_path / LOCK_NAME).write_text("{garbled")
    with OutputLock(str(tmp_path), "train") as taken:
        assert taken.taken_over == {}
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_two_identical_runs_write_byte_identical_shards(world, tmp_path):
    tried("re-run or concurrent run")
    import hashlib

    entities, queries, spec, _ = world
    sums = []
    for name in ("a", "b"):
        out = tmp_path / name
        harvest_pipeline.run(queries[:20], spec, options(), str(out))
        sums.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in out.iterdir()
                if shards.is_shard_name(p.name)
            }
        )
    assert sums[0] == sums[1] and len(sums[0]) == 6


@pytest.mark.slow
def test_a_search_cache_of_another_version_is_searched_again(world, tmp_path):
    tried("re-run or concurrent run")
    from entitynet.search.base import SearchCache

    entities, queries, spec, _ = world
    out = tmp_path / "out"
    first = harvest_pipeline.run(queries[:10], spec, options(), str(out))
    cached = sorted((out / "search_cache").iterdir())
    assert len(cached) == 10
    for p in cached:  # the answers as an older EntityNet stored them: a bare list of rows
        p.write_text(json.dumps(json.loads(p.read_text())["rows"]))
    settings = harvest.settings_digest(harvest.search_settings(spec))
    assert SearchCache(out / "search_cache", settings=settings).get("searxng", queries[0]) is None
    again = harvest_pipeline.run(queries[:10], spec, options(), str(out))
    assert again["candidates"] == first["candidates"]
    assert all(
        json.loads(p.read_text())["v"] == SCHEMA_VERSION for p in sorted((out / "search_cache").iterdir())
    )


def test_temp_files_a_killed_run_left_are_removed_by_the_next(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = tmp_path / "out"
    harvest_pipeline.run(queries[:10], spec, options(), str(out))
    # what a SIGKILL during the shard and unit writes leaves behind
    (out / (shards.shard_filename("train", 0, 2) + ".tmp-4242-1700000000000000000")).write_bytes(b"half")
    (out / "candidates.jsonl.staged-1700000000000000000").write_bytes(b"half")
    unit_dir = next((out / "fetch_work").iterdir())
    (unit_dir / "unit-000001-of-000256.00000.unit.tmp-4242-1700000000000000000").write_bytes(b"half")
    harvest_pipeline.run(queries[:10], spec, options(), str(out))
    assert not list(out.rglob("*.tmp-*")) and not list(out.rglob("*.staged-*"))


def test_curating_into_the_harvest_itself_is_refused(world, tmp_path):
    tried("re-run or concurrent run")
    entities, queries, spec, _ = world
    out = tmp_path / "out"
    harvest_pipeline.run(queries[:10], spec, options(), str(out))
    with pytest.raises(OutputError, match="is the input"):
        curate_pipeline.run(str(out), entities, [], CurateOptions(), str(out) + "/")


def test_an_object_store_lease_of_a_live_run_is_refused(bucket):
    tried("re-run or concurrent run")
    from entitynet.storage import STORE

    out = f"{bucket}/leased"
    with OutputLock(out, "harvest") as held:
        with (
            pytest.raises(OutputError, match=rf"in use by harvest run {held.run_id}"),
            OutputLock(out, "curate"),
        ):
            pass
        held.check()
        # another run overwrote the lease
        STORE.write(
            out + "/" + LOCK_NAME,
            json.dumps({"run_id": "other", "pid": os.getpid(), "host": "elsewhere"}).encode(),
        )
        with pytest.raises(OutputError, match="lost its lock"):
            held.check()
