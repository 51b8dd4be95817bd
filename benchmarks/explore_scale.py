"""The explorer at scale: build time and page weight for a dataset of 100k+ records.

    .venv/bin/python benchmarks/explore_scale.py                      # 100,000 records, 2,000 entities
    .venv/bin/python benchmarks/explore_scale.py --records 20000      # a quick look

A synthetic harvest: N small JPEGs (96x72, distinct bytes) linked to E synthetic entities with a
Zipf-like spread (a few entities hold thousands of images, most a few dozen), written as
harvest-format shards with their stats file. `entitynet explore` builds the site (DirectRunner,
multi-process with --workers). Printed: build seconds and records/s, the site's size, the index
file's size, the largest entity page file, the number of page files; then, when Debian's chromium
and chromedriver are installed, how long the index and the largest entity's page take to be ready
in headless Chromium (loaded from disk), and the index search's time for one keystroke. There is no
peer to put beside it (no tool in the field builds such a site); the figures say whether a page
stays fast whatever the size of the dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from entitynet import shards  # noqa: E402
from entitynet.records import Entity, EntityLink, ImageRecord, encode_image, image_key  # noqa: E402


def make_dataset(out: Path, n: int, n_entities: int, num_shards: int = 16) -> list[Entity]:
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entities = [
        Entity(id=f"Q{900000 + i}", label=f"creature {i}", natural_type_label=("animal", "plant")[i % 2],
               lineage=(f"family {i % 40}", "animal"))
        for i in range(n_entities)
    ]  # fmt: skip
    weights = 1.0 / np.arange(1, n_entities + 1) ** 0.8
    owner = rng.choice(n_entities, size=n, p=weights / weights.sum())
    by: dict[tuple[str, int], list[bytes]] = {}
    base = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
    for i in range(n):
        px = base.copy()
        px[i % 9, (i // 9) % 12] = (i * 7) % 256, (i * 13) % 256, (i // 256) % 256
        buf = io.BytesIO()
        Image.fromarray(px).resize((96, 72)).save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        sha = hashlib.sha256(data + i.to_bytes(8, "little")).hexdigest()
        e = entities[int(owner[i])]
        url = f"https://img.example/{i}.jpg"
        rec = ImageRecord(
            key=image_key(sha), jpeg=data, width=96, height=72, url=url, urls=(url,),
            alt_texts=(f"a photo of {e.label}", f"IMG_{i:06d}"), entity_ids=(e.id,),
            links=(EntityLink(e.id, ("noun",), i % 20, True, "alt_text"),), sha256=sha,
        )  # fmt: skip
        split = shards.split_of(rec.key)
        by.setdefault((split, shards.shard_of(rec.key, num_shards)), []).append(encode_image(rec))
    lengths: dict[str, list[int]] = {}
    for split in ("train", "validation", "test"):
        lengths[split] = []
        for k in range(num_shards):
            recs = by.get((split, k), [])
            shards.write_shard(out / shards.shard_filename(split, k, num_shards), sorted(recs))
            lengths[split].append(len(recs))
    shards.write_metadata(out, lengths, {})
    per_entity: dict[str, int] = {}
    for i in owner:
        per_entity[entities[int(i)].id] = per_entity.get(entities[int(i)].id, 0) + 1
    (out / shards.HARVEST_STATS).write_text(json.dumps({"files": {}, "per_entity": per_entity, "written": n}))
    return entities


def browser_timings(site: Path, entity_slug: str) -> dict | None:
    if not (shutil.which("/usr/bin/chromium") and shutil.which("/usr/bin/chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        out = {}
        for name, page in (("index", "index.html"), ("entity", f"entity.html?e={entity_slug}")):
            t = time.perf_counter()
            d.get(site.resolve().as_uri() + "/" + page)
            WebDriverWait(d, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready === '1'")
            )
            if name == "entity":  # every thumbnail of the first page, not only those on screen
                d.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                WebDriverWait(d, 60).until(
                    lambda d: d.execute_script(
                        "return [...document.querySelectorAll('#kept img.thumb')].every(i => i.complete)"
                    )
                )
            out[name] = time.perf_counter() - t
            if name == "index":
                t = time.perf_counter()
                d.execute_script(
                    "const s = document.getElementById('search'); s.value = 'creature 1'; "
                    "s.dispatchEvent(new Event('input'));"
                )
                out["search"] = time.perf_counter() - t
        return out
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--entities", type=int, default=2_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    from beam_pipelines import explore

    work = Path(tempfile.mkdtemp(prefix="entitynet-explore-bench-"))
    try:
        t = time.perf_counter()
        entities = make_dataset(work / "shards", args.records, args.entities)
        print(
            f"dataset: {args.records:,} records of {args.entities:,} entities in {time.perf_counter() - t:.1f} s"
        )
        beam_args = [
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={args.workers}",
        ]
        t = time.perf_counter()
        result = explore.run(str(work / "shards"), entities, str(work / "site"), beam_args=beam_args)
        seconds = time.perf_counter() - t
        site = work / "site"
        files = [p for p in site.rglob("*") if p.is_file()]
        pages = [p for p in (site / "data" / "e").rglob("*.js")]
        size = sum(p.stat().st_size for p in files)
        print(
            f"explore: {seconds:.1f} s, {args.records / seconds:,.0f} records/s; site {size / 1e6:.1f} MB in "
            f"{len(files):,} files; index {(site / 'data' / 'index.js').stat().st_size / 1e6:.2f} MB; "
            f"{len(pages):,} page files, largest {max(p.stat().st_size for p in pages) / 1e3:.0f} kB"
        )
        from entitynet.explore.site import read_script

        index = read_script((site / "data" / "index.js").read_bytes())[1]
        top = max(index["entities"], key=lambda r: r["images"])
        timings = browser_timings(site, top["slug"])
        if timings is None:
            print("browser: chromium/chromedriver not installed (make browser); page timings skipped")
        else:
            print(
                f"browser (headless chromium, from disk): index ready in {timings['index']:.2f} s, "
                f"one search keystroke {timings['search'] * 1000:.0f} ms; the largest entity "
                f"({top['images']:,} images, {len(top['pages']['kept'])} pages) ready with its first page's "
                f"thumbnails in {timings['entity']:.2f} s"
            )
        print(f"result: {result}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
