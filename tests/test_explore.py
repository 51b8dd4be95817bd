"""The dataset explorer on a real harvest, curation and evaluation of the sample web: its data files
agree with the stages' own stats files, every image is on exactly one page, removed images say
why; and the pages work in a real browser (Debian's chromium, driven by Selenium)."""

import json
import math
import os
import shutil
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beam_pipelines import curate
from beam_pipelines import explore as explore_pipeline
from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest, shards
from entitynet.curation import evalsets
from entitynet.curation.plan import CurateOptions
from entitynet.errors import ConfigError, OutputError
from entitynet.explore import site as site_lib
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.records import Entity, ImageRecord, Removal, encode_image, read_jsonl
from entitynet.sampleweb.evalset import write_eval_folder
from entitynet.sampleweb.server import SampleWeb
from entitynet.text.queries import build_queries

PAGE = 5  # images per page: every entity of the world has several pages
# an entity of the graph the harvest had no query for: no candidate, no image
GHOST = Entity(
    id="Q999999", label="phantom", description="no query looked for it", natural_type_label="animal"
)
# an entity `kg classify` left out: listed on the index, not among the entities
SOFTWARE = Entity(
    id="Q7397",
    label="software",
    natural_type_label="product",
    visual=False,
    visual_by="kg-rule",
    visual_reason="under abstract object, not under physical object",
)

CHROMIUM = os.environ.get("ENTITYNET_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ENTITYNET_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def world(sample_entities, tiny_run, tmp_path_factory):
    from train.embed import run as embed
    from train.eval_data import image_folder
    from train.evaluate import evaluate

    entities = [e for e in sample_entities if e.depth > 0][:8]
    queries = build_queries(entities)
    root = tmp_path_factory.mktemp("explore")
    fetch = FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01, retries=1)
    with SampleWeb(entities, seed=3) as web:
        spec = harvest.SearchSpec(
            backend="searxng,gbif,inaturalist",
            url=web.base_url,
            max_results=10,
            requests_per_second=0,
            entities=tuple(entities),
            endpoints=(("gbif", web.base_url), ("inaturalist", web.base_url)),
        )
        harvest_pipeline.run(
            queries,
            spec,
            harvest.HarvestOptions(fetch=fetch, num_shards=2),
            str(root / "shards"),
            entities=entities,
        )
        write_eval_folder(web, root / "evalset")
    opts = CurateOptions(t=6, seed=1, num_shards=2)
    curate.run(
        str(root / "shards"),
        [*entities, GHOST],
        [evalsets.load(str(root / "evalset"))],
        opts,
        str(root / "curated"),
    )
    known = {e.id: e for e in entities}
    evaluate(str(tiny_run), lambda run: image_folder(str(root / "evalset"), known), out=root / "eval")
    embed(str(root / "shards"), str(tiny_run), str(root / "emb"))  # the harvest, with the tiny run
    result = explore_pipeline.run(
        str(root / "curated"),
        [*entities, GHOST],
        str(root / "site"),
        {q.id: q.text for q in queries},
        [str(root / "eval")],
        page_size=PAGE,
        embeddings=str(root / "emb"),
        left_out=[SOFTWARE],
    )
    return root, entities, result


def data(site: Path, name: str):
    got_name, obj = site_lib.read_script((site / name).read_bytes())
    assert got_name == name
    return obj


def records_of(directory: Path) -> dict[str, ImageRecord]:
    info = json.loads((directory / "dataset_info.json").read_text())
    return {r.key: r for s in info["splits"] for r in shards.iter_records(directory, s["name"])}


def test_the_index_agrees_with_the_stats_files(world):
    root, entities, result = world
    site = root / "site"
    index = data(site, "data/index.js")
    rows = {r["id"]: r for r in index["entities"]}
    harvested, curated = records_of(root / "shards"), records_of(root / "curated")
    hstats = json.loads((root / "shards" / "harvest_stats.json").read_text())
    entries = {
        line.split("\t")[0]: [int(line.split("\t")[2]), int(line.split("\t")[3])]
        for line in (root / "curated" / "entry_counts.tsv").read_text().splitlines()[1:]
    }
    candidates = harvest.read_candidates(str(root / "shards"))
    assert result["entities"] == len(rows) >= 8 and index["summary"]["kind"] == "curated"
    for e, row in rows.items():
        mine = [r for r in harvested.values() if e in r.entity_ids]
        assert row["images"] == len(mine) == hstats["per_entity"].get(e, 0)
        assert row["kept"] == sum(r.key in curated for r in mine)
        assert row["after"] == sum(e in r.entity_ids for r in curated.values())
        assert sum(row["removed"].values()) == row["images"] - row["kept"]  # one reason each here
        assert row["entries"] == entries.get(e)
        assert (
            row["candidates"] == sum(e in c.entity_ids for c in candidates) == sum(row["outcomes"].values())
        )
        assert row["links"] == dict(
            Counter(x.why for r in harvested.values() for x in r.links if x.entity == e)
        )
    assert index["summary"]["harvest"]["candidates"] == hstats["candidates"]
    # every entity is listed; one without images says why, in the curation's words
    assert set(rows) == {e.id for e in entities} | {GHOST.id}
    assert rows[GHOST.id]["no_images"] == "no candidates: no search result named it"
    assert [e for e, row in rows.items() if row["no_images"]] == [
        e for e, row in rows.items() if row["after"] == 0
    ]
    assert (
        index["summary"]["unimaged"]
        == result["unimaged"]
        == len([r for r in rows.values() if r["no_images"]])
    )
    unimaged = (root / "curated" / "unimaged_entities.tsv").read_text().splitlines()
    assert {line.split("\t")[0]: line.split("\t")[3] for line in unimaged[1:]}[GHOST.id] == rows[GHOST.id][
        "no_images"
    ]
    assert len(unimaged) - 1 == index["summary"]["unimaged"]


def test_every_image_is_on_one_page_with_its_thumbnail(world):
    root, entities, _ = world
    site = root / "site"
    index = data(site, "data/index.js")
    harvested, curated = records_of(root / "shards"), records_of(root / "curated")
    removals = {
        rm.key: rm
        for name in json.loads((root / "curated" / "curation_stats.json").read_text())["files"]["removed"]
        for rm in read_jsonl(root / "curated" / name, Removal)
    }
    seen_reasons = set()
    for row in index["entities"]:
        for status in ("kept", "removed"):
            want = {
                k
                for k, r in harvested.items()
                if row["id"] in r.entity_ids and (k in curated) == (status == "kept")
            }
            # every page file there, some perhaps empty (the key digests spread the images)
            assert row["pages"][status] == math.ceil(len(want) / PAGE)
            got = []
            for page in range(row["pages"][status]):
                body = data(site, site_lib.page_path(row["id"], status, page))
                assert [r["key"] for r in body["rows"]] == sorted(r["key"] for r in body["rows"])
                got += body["rows"]
            assert sorted(r["key"] for r in got) == sorted(want)
            for r in got:
                rec = harvested[r["key"]]
                assert (
                    r["url"] == rec.url
                    and r["license"] == rec.license
                    and r["texts"] == list(rec.alt_texts[:8])
                )
                assert {x["entity"] for x in r["links"]} == {x.entity for x in rec.links}
                with Image.open(site / r["thumb"]) as im:
                    assert max(im.size) <= 160 and im.format == "JPEG"
                if status == "removed":
                    assert [x["reason"] for x in r["removed"]] == [removals[r["key"]].reason]
                    seen_reasons.add(removals[r["key"]].reason)
                    if r["removed"][0]["reason"].startswith("contaminated:"):
                        assert (root / "evalset" / r["removed"][0]["detail"]).is_file()
    assert {"balanced_out"} <= seen_reasons and any(x.startswith("contaminated:") for x in seen_reasons)


def test_the_evaluation_pages(world):
    root, *_ = world
    site = root / "site"
    evals = data(site, "data/evals.js")
    assert len(evals) == 1
    ev = data(site, f"data/eval/{evals[0]['slug']}.js")
    results = json.loads((root / "eval" / "results.json").read_text())
    zs = results["zero_shot"]
    assert ev["zero_shot"]["top1"] == zs["fixed_templates"]["top1"]
    assert {c["name"]: c["accuracy"] for c in ev["classes"]} == zs["per_class"]
    predictions = [
        json.loads(line) for line in (root / "eval" / "predictions.jsonl").read_text().splitlines()
    ]
    assert sum(c["images"] for c in ev["classes"]) == len(predictions) == zs["images"]
    assert sum(p["right"] for p in predictions) == round(zs["fixed_templates"]["top1"] * len(predictions))
    for c in ev["classes"]:
        assert c["examples"] and all(
            (site / x["img"]).is_file() and len(x["top5"]) == 5 for x in c["examples"]
        )
    assert [[p["a"], p["b"], p["count"]] for p in ev["confused"]] == zs["confused"]
    for p in ev["confused"]:  # the image of a shown for the pair was taken for b
        assert p["a_img"] and p["b_img"]
        shown = next(
            x for c in ev["classes"] if c["name"] == p["a"] for x in c["examples"] if x["img"] == p["a_img"]
        )
        assert not shown["right"] and shown["top5"][0][0] == p["b"]


def test_each_image_shows_its_nearest_neighbours_and_each_entity_a_map(world):
    """Against the embeddings themselves: every image's neighbours are the records whose embeddings
    score highest with its own (itself left out), with those scores; every entity's map holds its
    images, placed in [0, 1]."""
    from entitynet.explore import rows as rows_lib
    from entitynet.records import read_embeddings

    root, *_ = world
    site = root / "site"
    index = data(site, "data/index.js")
    keys, vectors = [], []
    for f in sorted((root / "emb").glob("*/*.npz")):
        e = read_embeddings(f)
        keys += [k.decode() for k in e.keys]
        vectors.append(e.image.astype(np.float32))
    v = np.concatenate(vectors)
    row_of = {k: i for i, k in enumerate(keys)}
    harvested = records_of(root / "shards")
    assert set(row_of) == set(harvested) and index["summary"]["embeddings"]["records"] == len(keys)
    seen = 0
    for row in index["entities"]:
        for status in ("kept", "removed"):
            for page in range(row["pages"][status]):
                for r in data(site, site_lib.page_path(row["id"], status, page))["rows"]:
                    scores = v @ v[row_of[r["key"]]]
                    scores[row_of[r["key"]]] = -np.inf  # not its own neighbour
                    best = np.sort(scores)[::-1][: rows_lib.NEIGHBOURS]
                    got = r["neighbours"]
                    assert len(got) == min(rows_lib.NEIGHBOURS, len(keys) - 1)
                    assert r["key"] not in [k for k, _ in got]
                    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
                    assert np.allclose([s for _, s in got], best, atol=2e-4)
                    assert np.allclose([s for _, s in got], [scores[row_of[k]] for k, _ in got], atol=2e-4)
                    seen += 1
        mine = {k for k, rec in harvested.items() if row["id"] in rec.entity_ids}
        assert row["embedded"] == len(mine) and row["map"] == min(len(mine), rows_lib.MAP_MAX)
        if mine:
            m = data(site, site_lib.map_path(row["id"]))
            assert len(m["points"]) == row["map"] and {p[0] for p in m["points"]} <= mine
            assert all(0 <= p[1] <= 1 and 0 <= p[2] <= 1 for p in m["points"])
        else:
            assert not (site / site_lib.map_path(row["id"])).exists()
    assert seen >= len(harvested)


def test_neighbours_and_maps_of_made_up_embeddings(tmp_path, sample_entities, monkeypatch):
    """Embeddings made up for the test: a near-copy is its original's first neighbour (and the other
    way round) and lies beside it on the map; a large entity's map is the fixed sample of MAP_MAX; a
    record without an embedding has no neighbours; a stale index is built again, saying why."""
    from factories import rendered

    from entitynet import embedindex
    from entitynet.explore import rows as rows_lib
    from entitynet.records import Embeddings, write_embeddings

    monkeypatch.setattr(rows_lib, "MAP_MAX", 4)
    ents = sample_entities[1:4]
    recs = [rendered(e, k) for e, n in zip(ents, (7, 3, 2), strict=True) for k in range(n)]
    data_dir = tmp_path / "harvest"
    data_dir.mkdir()
    name = shards.shard_filename("train", 0, 1)
    recs.sort(key=lambda r: r.key)
    shards.write_shard(data_dir / name, [encode_image(r) for r in recs])
    shards.write_metadata(data_dir, {"train": [len(recs)]}, {})
    per_entity = Counter(e for r in recs for e in r.entity_ids)
    (data_dir / shards.HARVEST_STATS).write_text(json.dumps({"files": {}, "per_entity": per_entity}))
    rng = np.random.default_rng(7)
    v = rng.standard_normal((len(recs), 16)).astype(np.float32)
    original, copy = [i for i, r in enumerate(recs) if r.entity_ids == (ents[0].id,)][:2]
    v[copy] = v[original] + 0.02 * rng.standard_normal(16)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    unembedded = next(i for i, r in enumerate(recs) if r.entity_ids == (ents[2].id,))
    embedded = [i for i in range(len(recs)) if i != unembedded]
    emb = tmp_path / "emb"
    (emb / "train").mkdir(parents=True)
    config = {"model_digest": "made-up", "shards": str(data_dir.resolve()), "dim": 16}
    (emb / "embed_config.json").write_text(json.dumps(config))
    with open(emb / "train" / (name + ".npz"), "wb") as f:
        write_embeddings(
            f,
            Embeddings(
                keys=np.asarray([recs[i].key for i in embedded], "S32"),
                image=v[embedded].astype(np.float16),
                text=np.zeros((0, 16), np.float16),
                text_owner=np.zeros(0, np.int32),
                text_kind=np.zeros(0, np.uint8),
                model="made-up",
                source="made up",
            ),
        )
    said: list[str] = []
    result = explore_pipeline.run(
        str(data_dir), ents, str(tmp_path / "site"), embeddings=str(emb), say=said.append
    )
    site = tmp_path / "site"
    assert not said and result["embedded"] == len(embedded) and result["mapped"] == 3
    index = {r["id"]: r for r in data(site, "data/index.js")["entities"]}
    page_rows = {
        r["key"]: r
        for e in ents
        for page in range(index[e.id]["pages"]["kept"])
        for r in data(site, site_lib.page_path(e.id, "kept", page))["rows"]
    }
    v16 = v.astype(np.float16).astype(np.float32)
    for i in embedded:
        scores = {recs[j].key: float(v16[i] @ v16[j]) for j in embedded if j != i}
        want = sorted(scores, key=lambda k: -scores[k])[: rows_lib.NEIGHBOURS]
        assert [k for k, _ in page_rows[recs[i].key]["neighbours"]] == want
    for a, b in ((original, copy), (copy, original)):
        first_key, first_score = page_rows[recs[a].key]["neighbours"][0]
        assert first_key == recs[b].key and first_score > 0.99
    assert page_rows[recs[unembedded].key]["neighbours"] is None
    # the maps: of the 7 the 4 first by key digest, all 3, the one embedded of the 2
    for e, n in zip(ents, (7, 3, 1), strict=True):
        mine = sorted((recs[i].key for i in embedded if e.id in recs[i].entity_ids), key=rows_lib.map_rank)
        m = data(site, site_lib.map_path(e.id))
        assert index[e.id]["embedded"] == n and index[e.id]["map"] == len(m["points"]) == min(n, 4)
        assert [p[0] for p in m["points"]] == sorted(mine[:4])
    assert data(site, site_lib.map_path(ents[2].id))["points"][0][1:3] == [0.5, 0.5]
    # the map itself (a plain function): the copy beside its original, whatever the order given
    points = [(recs[i].key, "kept", v16[i]) for i in embedded if recs[i].entity_ids == (ents[0].id,)]
    whole = rows_lib.entity_map(ents[0].id, points)
    at = {p[0]: np.array(p[1:3]) for p in whole["points"]}
    assert len(at) == 7 and np.linalg.norm(at[recs[original].key] - at[recs[copy].key]) < 0.05
    assert rows_lib.entity_map(ents[0].id, points[::-1]) == whole
    assert all(0 <= c <= 1 for p in whole["points"] for c in p[1:3]) and sum(whole["explained"]) <= 1
    # the embeddings re-made behind the index's back: built again before the site, saying why
    os.utime(emb / "train" / (name + ".npz"), ns=(1, 2))
    explore_pipeline.run(str(data_dir), ents, str(site), embeddings=str(emb), say=said.append)
    assert said == [
        f"the index of {emb} is stale (1 embeddings file(s) re-made, 0 new, 0 gone since it was built): "
        "building it again"
    ]
    assert embedindex.staleness(emb) is None


def test_a_rebuild_reuses_thumbnails_and_wrong_targets_are_refused(world, tmp_path):
    root, entities, _ = world
    site = tmp_path / "site"  # a copy: the other tests read the world's site
    shutil.copytree(root / "site", site)
    thumb = next((site / "thumbs-160").rglob("*.jpg"))
    before = thumb.stat().st_mtime_ns
    (site / "data" / "stale.js").write_text("stale")
    again = explore_pipeline.run(str(root / "curated"), entities, str(site), page_size=PAGE)
    assert thumb.stat().st_mtime_ns == before and not (site / "data" / "stale.js").exists()
    assert again["entities"] == len(data(site, "data/index.js")["entities"]) and again["evaluations"] == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an explorer site"):
        explore_pipeline.run(str(root / "curated"), entities, str(tmp_path / "other"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="neither a harvest"):
        explore_pipeline.run(str(root / "evalset"), entities, str(tmp_path / "s2"))
    with pytest.raises(ConfigError, match="no results.json"):
        explore_pipeline.run(
            str(root / "curated"), entities, str(tmp_path / "s3"), eval_paths=[str(tmp_path)]
        )
    assert not (tmp_path / "s3").exists()  # refused before anything was written


def test_serve_answers_on_loopback(world):
    from entitynet.explore.serve import serve_in_thread

    root, *_ = world
    srv, base = serve_in_thread(str(root / "site"))
    try:
        assert b"EntityNet explorer" in urllib.request.urlopen(base + "index.html", timeout=5).read()
        assert urllib.request.urlopen(base + "data/index.js", timeout=5).read().startswith(b"EXPLORER.data(")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "../curated/curation_stats.json", timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_demo_style_command_line(world, tmp_path, capsys):
    from entitynet_cli.main import main

    root, entities, _ = world
    code = main(
        [
            "explore",
            str(root / "shards"),  # a harvest, not curated: one "harvested" grid per entity
            "--entities",
            str(root / "missing.jsonl"),
        ]
    )
    assert code == 2 and "missing.jsonl" in capsys.readouterr().err
    from entitynet.records import write_jsonl

    write_jsonl(tmp_path / "entities.jsonl", entities)
    code = main(
        [
            "explore",
            str(root / "shards"),
            "--entities",
            str(tmp_path / "entities.jsonl"),
            "--out",
            str(tmp_path / "s"),
            "--embeddings",
            str(root / "emb"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and str((tmp_path / "s" / "index.html").resolve()) in out
    images = len(records_of(root / "shards"))
    assert f"{images:,} images, {images:,} with their nearest neighbours, " in out
    index = data(tmp_path / "s", "data/index.js")
    assert index["summary"]["kind"] == "harvest" and all(
        r["kept"] == 0 and r["pages"]["removed"] == 0 for r in index["entities"]
    )


# ---------------------------------------------------------------- in a real browser


def browser():
    """Headless Debian chromium through its chromedriver; a failure (never a skip) says what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(
            f"the browser test needs {' and '.join(missing)} (Debian packages chromium and chromium-driver); "
            "`make browser` installs them (apt-get, as root or with sudo); "
            "ENTITYNET_CHROMIUM / ENTITYNET_CHROMEDRIVER name other paths"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"the browser test needs selenium ({e}); `make test` installs it with the test extras")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as e:  # noqa: BLE001 - selenium raises several kinds for a browser that does not start
        pytest.fail(
            f"chromium did not start through {CHROMEDRIVER}: {type(e).__name__}: {str(e).splitlines()[0]}"
        )


@pytest.fixture(scope="module")
def driver():
    d = browser()
    yield d
    d.quit()


def wait_ready(d, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, timeout).until(
        lambda d: d.execute_script(
            "return document.body.dataset.ready === '1' || !!document.getElementById('error')"
        )
    )
    errors = d.find_elements("id", "error")
    assert not errors, errors[0].text


def images_loaded(d, selector: str) -> tuple[int, int]:
    """(images matching `selector`, of which decoded with pixels), after they finished loading
    (lazy images off screen are asked for first: a headless window never scrolls to them)."""
    from selenium.webdriver.support.ui import WebDriverWait

    d.execute_script(f"document.querySelectorAll({json.dumps(selector)}).forEach(i => i.loading = 'eager')")

    WebDriverWait(d, 20).until(
        lambda d: d.execute_script(
            f"return [...document.querySelectorAll({json.dumps(selector)})].every(i => i.complete)"
        )
    )
    return d.execute_script(
        f"const a = [...document.querySelectorAll({json.dumps(selector)})]; return [a.length, a.filter(i => i.naturalWidth > 0).length];"
    )


def card_keys(d, status: str) -> list[str]:
    return d.execute_script(
        f"return [...document.querySelectorAll('#{status} .card')].map(c => c.dataset.key)"
    )


def test_the_site_in_a_real_browser(world, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, entities, _ = world
    site = (root / "site").resolve()
    index = data(site, "data/index.js")
    target = max(index["entities"], key=lambda r: (r["pages"]["kept"] + r["pages"]["removed"], r["id"]))
    driver.get(site.as_uri() + "/index.html")
    wait_ready(driver)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#entities tbody tr")) == len(index["entities"])
    # sorted by images, most first
    shown = [
        int(x.text.replace(",", "")) for x in driver.find_elements(By.CSS_SELECTOR, "#entities td.images")
    ]
    assert shown == sorted(shown, reverse=True)
    Select(driver.find_element(By.ID, "sort")).select_by_value("label")
    labels = [x.text for x in driver.find_elements(By.CSS_SELECTOR, "#entities a.entity-link")]
    assert labels == sorted(labels, key=str.casefold)
    # the entity without images is listed, marked, with why; sorted first on request
    ghost = driver.find_element(By.CSS_SELECTOR, f'#entities tr[data-id="{GHOST.id}"]')
    assert "no-images" in ghost.get_attribute("class").split()
    assert "no images: no candidates: no search result named it" in ghost.text
    assert (
        f"{index['summary']['unimaged']} entities without images"
        in driver.find_element(By.ID, "summary").text
    )
    # what kg classify left out, with who decided and why, apart from the entities
    (row,) = driver.find_elements(By.CSS_SELECTOR, "#left-out-table tbody tr")
    assert driver.find_element(By.ID, "left-out").is_displayed()
    assert "software" in row.text and "kg-rule" in row.text and "under abstract object" in row.text
    assert "1 entities left out as not visual" in driver.find_element(By.ID, "summary").text
    assert not driver.find_elements(By.CSS_SELECTOR, f'#entities tr[data-id="{SOFTWARE.id}"]')
    Select(driver.find_element(By.ID, "sort")).select_by_value("noimages")
    marked = [
        "no-images" in (r.get_attribute("class") or "")
        for r in driver.find_elements(By.CSS_SELECTOR, "#entities tbody tr")
    ]
    assert marked == sorted(marked, reverse=True) and marked[0]
    box = driver.find_element(By.ID, "search")
    box.send_keys(target["label"])
    rows = driver.find_elements(By.CSS_SELECTOR, "#entities tbody tr")
    assert target["id"] in [r.get_attribute("data-id") for r in rows]
    assert all(target["label"].lower() in r.text.lower() for r in rows)
    row = next(r for r in rows if r.get_attribute("data-id") == target["id"])
    assert row.find_element(By.CSS_SELECTOR, "td.images").text == f"{target['images']:,}"
    assert (
        row.find_element(By.CSS_SELECTOR, "td.entries").text
        == f"{target['entries'][0]:,} → {target['entries'][1]:,}"
    )
    row.find_element(By.CSS_SELECTOR, "a.entity-link").click()
    wait_ready(driver)
    assert driver.find_element(By.ID, "title").text.startswith(target["label"])
    # the numbers are the stats files' numbers
    entries = {
        line.split("\t")[0]: line.split("\t")[2:]
        for line in (root / "curated" / "entry_counts.tsv").read_text().splitlines()[1:]
    }
    assert driver.find_element(By.ID, "stat-images").text == str(
        json.loads((root / "shards" / "harvest_stats.json").read_text())["per_entity"][target["id"]]
    )
    assert driver.find_element(By.ID, "stat-entries").text == " → ".join(entries[target["id"]])
    assert driver.find_element(By.ID, "stat-kept").text == str(target["kept"])
    for status in ("kept", "removed"):
        if not target["pages"][status]:
            continue
        first_page = data(site, site_lib.page_path(target["id"], status, 0))["rows"]
        assert card_keys(driver, status) == [r["key"] for r in first_page]
        n, ok = images_loaded(driver, f"#{status} .card img.thumb")
        assert n >= len(first_page) and ok == n, f"{n - ok} of {n} thumbnails did not load"
        if target["pages"][status] > 1:  # the next page replaces the grid
            driver.find_element(By.CSS_SELECTOR, f"#{status} .pager .next").click()
            second = [r["key"] for r in data(site, site_lib.page_path(target["id"], status, 1))["rows"]]
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, 10).until(
                lambda d, status=status, second=second: card_keys(d, status) == second
            )
            n, ok = images_loaded(driver, f"#{status} .card img.thumb")
            assert ok == n >= len(second)
    # each card shows its nearest images, whose thumbnails load; the entity's map holds its images
    near = {
        r["key"]: r["neighbours"]
        for page in range(target["pages"]["kept"])
        for r in data(site, site_lib.page_path(target["id"], "kept", page))["rows"]
    }
    figures = driver.execute_script(
        "return [...document.querySelectorAll('#kept .card')].map(c => [...c.querySelectorAll('.neighbours figure')].map(f => f.dataset.key))"
    )
    assert figures == [[k for k, _ in near[key]] for key in card_keys(driver, "kept")] and all(figures)
    n, ok = images_loaded(driver, "#kept .neighbours img")
    assert n == sum(map(len, figures)) and ok == n
    assert len(driver.find_elements(By.CSS_SELECTOR, "#map svg g.pt")) == target["map"] > 0
    assert driver.find_element(By.ID, "stat-embedded").text == str(target["embedded"])
    removed_text = driver.find_element(By.ID, "removed").text
    if target["pages"]["removed"]:
        assert "removed:" in removed_text
    shot = tmp_path / "entity.png"
    assert driver.save_screenshot(str(shot))
    with Image.open(shot) as im:
        assert im.size[0] >= 1000 and len(set(im.convert("L").tobytes())) > 20  # a page, not a blank
    # the page of the entity without images says why
    driver.get(site.as_uri() + "/entity.html?e=" + site_lib.slug(GHOST.id))
    wait_ready(driver)
    assert (
        driver.find_element(By.ID, "no-images").text == "No images: no candidates: no search result named it"
    )
    assert driver.find_element(By.ID, "stat-images").text == "0"
    # the evaluation: classes with their top-5, confused pairs as image pairs
    ev = data(site, "data/evals.js")[0]
    driver.get(site.as_uri() + "/eval.html?set=" + ev["slug"])
    wait_ready(driver)
    classes = driver.find_elements(By.CSS_SELECTOR, "#classes .class")
    assert len(classes) == len(data(site, f"data/eval/{ev['slug']}.js")["classes"])
    assert all(
        len(li.find_elements(By.CSS_SELECTOR, "ol.top5 li")) == 5
        for li in driver.find_elements(By.CSS_SELECTOR, "#classes .card")
    )
    n, ok = images_loaded(driver, "#confused img, #classes img")
    assert n and ok == n
    driver.save_screenshot(str(tmp_path / "eval.png"))
    # a set the site does not list is refused, not loaded as a script path
    driver.get(site.as_uri() + "/eval.html?set=../../curated/x")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "error"))
    assert "no evaluation ../../curated/x" in driver.find_element(By.ID, "error").text
    console = [m for m in driver.get_log("browser") if m["level"] == "SEVERE"]
    assert not console, console


def test_hostile_texts_stay_text_in_the_browser(driver, tmp_path, sample_entities):
    """Alt texts and URLs come from the web: markup in them is shown, never run, and a javascript:
    URL is not made a link."""
    from factories import rendered
    from selenium.webdriver.common.by import By

    from entitynet.records import EntityLink

    e = sample_entities[1]
    data_dir = tmp_path / "harvest"
    evil = "<img src=x onerror=\"document.title='pwned'\"></script><b>bold</b>"
    rec = rendered(
        e,
        0,
        url="javascript:document.title='pwned'",
        page_url="javascript:alert(1)",
        alt_texts=(evil,),
        links=(EntityLink(e.id, why="alt_text", alt_text=True),),
        attribution=evil,
    )
    split = shards.split_of(rec.key)
    data_dir.mkdir()
    shards.write_shard(data_dir / shards.shard_filename(split, 0, 1), [encode_image(rec)])
    shards.write_metadata(data_dir, {split: [1]}, {})
    (data_dir / shards.HARVEST_STATS).write_text(json.dumps({"files": {}, "per_entity": {e.id: 1}}))
    explore_pipeline.run(str(data_dir), [e], str(tmp_path / "site"))
    driver.get((tmp_path / "site").resolve().as_uri() + "/entity.html?e=" + site_lib.slug(e.id))
    wait_ready(driver)
    card = driver.find_element(By.CSS_SELECTOR, "#kept .card")
    assert evil in card.text  # shown as text
    assert driver.title != "pwned" and not card.find_elements(By.TAG_NAME, "b")
    assert all(
        not (a.get_attribute("href") or "").startswith("javascript")
        for a in card.find_elements(By.TAG_NAME, "a")
    )
    assert driver.execute_script("return document.querySelectorAll('#kept .card img').length") == 1


def test_an_empty_harvest_builds_a_site_and_a_curation_finds_its_harvest(tmp_path, sample_entities):
    """A harvest that wrote nothing still gets its (empty) site; a curated dataset's harvest is found
    by the absolute path curate records, or, as older runs recorded it, relative to where it ran."""
    harvest_dir = tmp_path / "shards"
    harvest_dir.mkdir()
    shards.write_shard(harvest_dir / shards.shard_filename("train", 0, 1), [])  # as a harvest writes it
    shards.write_metadata(harvest_dir, {"train": [0]}, {})
    (harvest_dir / shards.HARVEST_STATS).write_text(json.dumps({"files": {}, "per_entity": {}}))
    result = explore_pipeline.run(str(harvest_dir), sample_entities[:3], str(tmp_path / "site"))
    index = data(tmp_path / "site", "data/index.js")["entities"]
    assert result["entities"] == result["unimaged"] == 3 and [r["id"] for r in index] == [
        e.id for e in sample_entities[:3]
    ]
    # the harvest lists no candidates files: that none named them is not known
    assert all(r["images"] == 0 and r["no_images"] == "no image in the input is linked to it" for r in index)
    curated = tmp_path / "curated"
    curated.mkdir()
    assert shards.harvest_of(curated, str(harvest_dir)) == str(harvest_dir)
    assert shards.harvest_of(curated, "shards") == str(tmp_path / "shards")  # beside the curated set
    assert (
        shards.harvest_of(curated, str(tmp_path / "gone")) is None and shards.harvest_of(curated, "") is None
    )
