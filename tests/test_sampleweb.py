"""The sample web: deterministic corpus, lineage-driven looks, SearXNG-shaped search, faulty links."""

import numpy as np
import pytest

from entitynet.fetch.fetcher import Fetcher, FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.images.process import ImageRejected, process_image
from entitynet.records import Query, query_id
from entitynet.sampleweb.corpus import build_corpus
from entitynet.sampleweb.render import render, traits
from entitynet.sampleweb.server import SampleWeb
from entitynet.search.web import SearXNG


@pytest.fixture(scope="module")
def web(sample_entities):
    with SampleWeb(sample_entities, seed=0) as w:
        yield w


def by_label(entities):
    return {e.label: e for e in entities}


def test_corpus_is_deterministic_and_web_like(sample_entities):
    a, b = build_corpus(sample_entities, seed=0), build_corpus(sample_entities, seed=0)
    assert a == b and build_corpus(sample_entities, seed=1) != a
    assert 2000 < len(a) < 10000
    assert {im.fault for im in a} == {"", "dead", "error500", "truncated", "html", "noai"}
    assert sum(im.entity_id is None for im in a) > 100  # distractors
    lion = [im for im in a if im.entity_id == "Q140"]
    alts = {im.alt for im in lion}
    assert any("lion" in x.lower() for x in alts) and any(x == "Panthera leo" for x in alts)


def test_looks_follow_the_lineage(sample_entities):
    e = by_label(sample_entities)
    lion, tiger, cat, oak = (
        traits(e[n].lineage_ids, e[n].id) for n in ("lion", "tiger", "house cat", "English oak")
    )
    assert lion["shape"] == tiger["shape"] == cat["shape"]  # same class
    assert lion["accent_hue"] == tiger["accent_hue"] != cat["accent_hue"]  # same genus, not the cat's
    assert lion["body_hue"] != tiger["body_hue"]  # species differ
    assert (lion["background"], lion["shape"]) != (oak["background"], oak["shape"])
    im1 = np.asarray(render(e["lion"].lineage_ids, "Q140", 1, (200, 160)), dtype=float)
    im2 = np.asarray(render(e["lion"].lineage_ids, "Q140", 2, (200, 160)), dtype=float)
    assert im1.shape == (160, 200, 3) and np.abs(im1 - im2).mean() > 3  # poses differ
    assert np.array_equal(im1, np.asarray(render(e["lion"].lineage_ids, "Q140", 1, (200, 160)), dtype=float))


def test_searxng_backend_against_the_sample_web(web):
    q = Query(
        id=query_id("noun", "lion"),
        text="lion",
        kind="noun",
        entity_ids=("Q140",),
        exclude_terms=("drawing",),
    )
    found = SearXNG(web.base_url, max_results=40, requests_per_second=0).search(q)
    assert found and all(c.url.startswith(web.base_url + "/img/") for c in found)
    ids = [c.url.split("/img/")[1][:-4] for c in found]
    # ranked like an engine: pages titled with the name first, so the top is almost all lions
    assert sum(i.startswith("Q140-") for i in ids[:10]) >= 8
    titled = [web.by_id[i].alt.lower() for i in ids]
    first_untitled = next(k for k, t in enumerate(titled) if "lion" not in t)
    assert all("lion" not in t for t in titled[first_untitled:])
    # generic pages (collages listing dozens of species) come with the name's results
    assert any(i.startswith("g-") for i in ids) and any(i.startswith("Q140-") for i in ids[first_untitled:])


def test_generic_pages_are_found_by_many_queries(web, sample_entities):
    generic = [im for im in web.corpus if im.id.startswith("g-")]
    assert 50 < len(generic) < 400 and all(im.entity_id is None and len(im.names) >= 30 for im in generic)
    finders = {}
    for e in sample_entities[:80]:
        for im in web.index.search(e.label)[:20]:
            finders.setdefault(im.id, set()).add(e.id)
    many = [i for i, ents in finders.items() if len(ents) > 3]
    assert many and all(i.startswith("g-") or "x-" in i for i in many)


def test_fetching_the_sample_web_gives_every_outcome(web):
    f = Fetcher(FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01, retries=1))
    seen = {}
    for im in web.corpus:
        kind = im.fault or ("small" if im.width < 64 else "wide" if im.width / im.height > 3 else "ok")
        if kind in seen:
            continue
        r = f.fetch(f"{web.base_url}/img/{im.id}.jpg")
        outcome = r.reason
        if r.ok:
            try:
                process_image(r.data)
                outcome = "written"
            except ImageRejected as e:
                outcome = e.reason
        seen[kind] = outcome
        if len(seen) == 8:
            break
    assert seen == {
        "ok": "written",
        "dead": "http_404",
        "error500": "http_5xx",
        "truncated": "decode_error",
        "html": "not_an_image",
        "noai": "opted_out",
        "small": "too_small",
        "wide": "bad_aspect",
    }
