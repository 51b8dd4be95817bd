"""The open sources: commons-category, gbif and inaturalist against loopback servers speaking their
APIs' shapes (the sample web's archives, and a scripted server for errors), the offline GBIF and
iNaturalist readers on generated files, licence filtering, and provenance through the harvest,
curation, TFDS and Grain."""

from __future__ import annotations

import glob
import json
import zipfile

import pytest
from factories import record
from loopback import LoopbackHandler, LoopbackServer

from beam_pipelines import curate as curate_pipeline
from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest
from entitynet.curation.plan import CurateOptions
from entitynet.errors import ConfigError, SearchError
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.licenses import normalize
from entitynet.records import (
    Candidate,
    ImageRecord,
    Provenance,
    Query,
    decode_image,
    decode_search_answer,
    encode_image,
    encode_search_answer,
    merge_candidates,
    merge_images,
)
from entitynet.sampleweb import archives
from entitynet.sampleweb.server import SampleWeb
from entitynet.search import gbif, inaturalist
from entitynet.search.commons_category import CommonsCategory
from entitynet.search.gbif import Gbif
from entitynet.search.inaturalist import INaturalist
from entitynet.shards import ATTRIBUTION_HEADER, iter_records, shard_paths
from entitynet.text.queries import QueryConfig, build_queries


def options(**kw):
    fetch = FetchOptions(address=AddressPolicy(allow_loopback=True), backoff=0.01, retries=1)
    return harvest.HarvestOptions(fetch=fetch, num_shards=2, **kw)


@pytest.fixture(scope="module")
def world(sample_entities):
    entities = [e for e in sample_entities if e.gbif_id and e.depth > 0][:12]
    return entities, build_queries(entities, QueryConfig(living=True))


def noun(entity) -> Query:
    return Query(f"q-{entity.id}", entity.label, "noun", (entity.id,))


def test_sample_graph_carries_source_identifiers(sample_entities):
    by_label = {e.label: e for e in sample_entities}
    lion, fox = by_label["lion"], by_label["red fox"]
    assert (lion.gbif_id, lion.inaturalist_id, lion.commons_category, lion.eol_id) == (
        "5219404",
        "41964",
        "Panthera leo",
        "328672",
    )
    assert (fox.gbif_id, fox.inaturalist_id) == ("5219243", "42069")
    taxa = [e for e in sample_entities if e.taxon_names]
    assert taxa and all(e.gbif_id and e.inaturalist_id and e.commons_category for e in taxa)
    assert len({e.gbif_id for e in taxa}) == len(taxa)  # one key per taxon


# ---------------------------------------------------------------- the APIs, happy paths (sample web)


@pytest.mark.parametrize("name", ["gbif", "inaturalist", "commons"])
def test_backend_pages_through_its_api(world, name):
    entities, _ = world
    e = entities[0]
    with SampleWeb(entities, archive_photos=5, api_page=2) as web:  # pages of 2: paging is needed
        if name == "gbif":
            backend = Gbif(entities, web.base_url, max_results=4, requests_per_second=0)
        elif name == "inaturalist":
            backend = INaturalist(entities, web.base_url, max_results=4, size="small", requests_per_second=0)
        else:
            backend = CommonsCategory(
                entities, web.base_url + "/w/api.php", max_results=4, requests_per_second=0
            )
        found = backend.search(noun(e))
        assert backend.search(Query("a", "red lion", "attribute-noun", (e.id,))) == []
        requests = web.api_requests[name]
        truth = web.archives[name][
            {"gbif": e.gbif_id, "inaturalist": e.inaturalist_id, "commons": e.commons_category}[name]
        ]
    assert len(found) == 4 and len({c.url for c in found}) == 4  # capped at max_results, over 2 pages
    assert requests >= 2
    assert all(c.id_entities == (e.id,) == c.entity_ids and c.query_ids == (f"q-{e.id}",) for c in found)
    assert all(c.backend == backend.name and c.page_url and c.attribution for c in found)
    expected = truth[:4]

    assert [c.license for c in found] == [normalize(p.license) for p in expected]
    assert all(any(p.author in c.attribution for p in expected) for c in found)
    assert all(e.taxon_names[0] in " ".join(c.alt_texts) for c in found)
    if name == "inaturalist":
        assert all(c.url.endswith("/small.jpg") for c in found)
    if name == "commons":
        assert all("width=" in c.url for c in found)  # the thumbnail, not the original
        assert all(any(t == f"a {e.label}" for t in c.alt_texts) for c in found)  # the caption


# ---------------------------------------------------------------- a scripted API for errors


class ScriptedApi:
    """A loopback JSON API answering each request with the next scripted (status, body, headers);
    records the requests' paths, parameters and headers."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        api = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                api.requests.append((self.url_path, self.params, dict(self.headers)))
                status, body, headers = api.script.pop(0) if api.script else (500, "script ended", {})
                self.send_json(status, body, headers)

        self.server = LoopbackServer(Handler)
        self.url = self.server.base

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.close()


def ok(body):
    return (200, body, {})


def _entity(sample_entities, **ids):
    from dataclasses import replace

    return replace(sample_entities[0], **ids)


def test_commons_category_walks_subcategories_with_continuation_and_etiquette(sample_entities):
    e = _entity(sample_entities, commons_category="Felis")
    members = lambda titles, cont=None: ok(  # noqa: E731
        {"query": {"categorymembers": [{"title": t} for t in titles]}, **({"continue": cont} if cont else {})}
    )
    info = ok(
        {
            "query": {
                "pages": [
                    {
                        "pageid": 7,
                        "title": "File:A.jpg",
                        "imageinfo": [
                            {
                                "url": "https://x/A.jpg",
                                "thumburl": "https://x/A-320.jpg",
                                "thumbwidth": 320,
                                "thumbheight": 200,
                                "descriptionurl": "https://c/File:A.jpg",
                                "mime": "image/jpeg",
                                "extmetadata": {
                                    "LicenseShortName": {"value": "CC BY-SA 3.0"},
                                    "LicenseUrl": {"value": "https://creativecommons.org/licenses/by-sa/3.0"},
                                    "Artist": {"value": "<a href='u'>Ann</a>"},
                                    "ImageDescription": {"value": "<b>A cat</b> on a wall"},
                                },
                            }
                        ],
                    },
                    {
                        "pageid": 8,
                        "title": "File:B.ogv",
                        "imageinfo": [{"url": "https://x/B.ogv", "mime": "video/ogg"}],
                    },
                    {
                        "pageid": 9,
                        "title": "File:C.jpg",
                        "imageinfo": [{"url": "https://x/C.jpg", "extmetadata": {}}],
                    },
                ]
            }
        }
    )
    script = [
        (
            200,
            {"error": {"code": "maxlag", "info": "Waiting for a database server: 6 seconds lagged"}},
            {"Retry-After": "0"},
        ),
        members(["File:A.jpg", "Category:Felis silvestris"], {"cmcontinue": "page|2", "continue": "-||"}),
        members(["File:B.ogv", "Category:Felis"]),  # a cycle back to the category: listed once
        (200, {"error": {"code": "ratelimited", "info": "You've exceeded your rate limit"}}, {}),
        members(["File:C.jpg", "Category:Deeper"]),  # depth 1: Deeper is not listed
        info,
        ok({"entities": {"M7": {"labels": {"en": {"language": "en", "value": "a tabby cat"}}}}}),
    ]
    with ScriptedApi(script) as api:
        b = CommonsCategory(
            [e],
            api.url,
            depth=1,
            width=320,
            requests_per_second=0,
            contact="me@example.org",
            backoff=0.01,
            maxlag_wait=0,
        )
        found = b.search(noun(e))
        reqs = api.requests
    assert [c.url for c in found] == ["https://x/A-320.jpg", "https://x/C.jpg"]  # no video
    a, c = found
    assert (a.license, a.attribution, a.page_url) == ("CC-BY-SA-3.0", "Ann", "https://c/File:A.jpg")
    assert a.alt_texts == ("a tabby cat", "A cat on a wall") and (a.width, a.height) == (320, 200)
    assert c.license == "unknown" and c.alt_texts == ("C",)
    assert all(p.get("maxlag") == "5" and p.get("format") == "json" for _, p, _ in reqs)
    assert all("me@example.org" in h["User-Agent"] and "EntityNet/" in h["User-Agent"] for _, _, h in reqs)
    listed = [p["cmtitle"] for _, p, _ in reqs if p.get("list") == "categorymembers"]
    assert listed == [
        "Category:Felis",
        "Category:Felis",
        "Category:Felis",
        "Category:Felis silvestris",
        "Category:Felis silvestris",
    ]
    assert reqs[2][1]["cmcontinue"] == "page|2" and reqs[5][1]["iiurlwidth"] == "320"
    assert reqs[5][1]["iiprop"] == "url|size|mime|extmetadata" and reqs[6][1]["ids"] == "M7|M8|M9"


def test_commons_category_errors_are_one_clear_line(sample_entities):
    e = _entity(sample_entities, commons_category="Felis")
    with ScriptedApi([ok({"error": {"code": "badtoken", "info": "Invalid token"}})]) as api:
        with pytest.raises(SearchError, match="error 'badtoken'"):
            CommonsCategory([e], api.url, requests_per_second=0, backoff=0.01).search(noun(e))
    script = [(200, {"error": {"code": "ratelimited", "info": "slow down"}}, {})] * 3
    with ScriptedApi(script) as api:
        b = CommonsCategory([e], api.url, requests_per_second=0, backoff=0.01, maxlag_wait=0)
        b.api.retries = 2
        with pytest.raises(SearchError, match="ratelimited"):
            b.search(noun(e))
        assert len(api.requests) == 3  # retried, then given up
    with ScriptedApi([ok("[1, 2]")]) as api:
        with pytest.raises(SearchError, match="not an object"):
            CommonsCategory([e], api.url, requests_per_second=0).search(noun(e))


def test_gbif_retries_then_reads_media_licences_and_stops_at_end_of_records(sample_entities):
    e = _entity(sample_entities, gbif_id="5219404")
    occ = lambda k, media, **kw: {"key": k, "scientificName": "Panthera leo", "media": media, **kw}  # noqa: E731
    script = [
        (503, "busy", {"Retry-After": "0"}),
        ok(
            {
                "offset": 0,
                "endOfRecords": False,
                "results": [
                    occ(
                        1,
                        [
                            {
                                "type": "StillImage",
                                "identifier": "https://i/1.jpg",
                                "license": "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
                                "rightsHolder": "Ann",
                            }
                        ],
                        vernacularName="lion",
                    ),
                    occ(
                        2,
                        [
                            {"type": "Sound", "identifier": "https://i/2.mp3"},
                            {"type": "StillImage", "identifier": "https://i/2.jpg"},
                        ],
                        license="CC_BY_4_0",
                        recordedBy="Bob",
                    ),
                ],
            }
        ),
        ok(
            {
                "offset": 2,
                "endOfRecords": True,
                "results": [occ(3, [{"type": "StillImage", "identifier": "ftp://i/3.jpg"}])],
            }
        ),
    ]
    with ScriptedApi(script) as api:
        found = Gbif([e], api.url, max_results=10, requests_per_second=0, backoff=0.01).search(noun(e))
        reqs = api.requests
    assert [c.url for c in found] == ["https://i/1.jpg", "https://i/2.jpg"]
    one, two = found
    assert (one.license, one.attribution, one.page_url) == (
        "CC-BY-NC-4.0",
        "Ann",
        "https://www.gbif.org/occurrence/1",
    )
    assert one.license_url.startswith("http://creativecommons.org/licenses/by-nc/4.0")
    assert one.alt_texts == ("lion", "Panthera leo")
    assert (two.license, two.attribution) == ("CC-BY-4.0", "Bob")  # the occurrence's licence and recorder
    assert [r[1]["offset"] for r in reqs] == ["0", "0", "2"] and reqs[0][0] == "/v1/occurrence/search"
    assert reqs[0][1] == {"taxonKey": "5219404", "mediaType": "StillImage", "limit": "300", "offset": "0"}


@pytest.mark.parametrize(
    "answer, message",
    [
        ((400, {"message": "bad taxonKey"}, {}), "HTTP 400"),
        (ok({"count": 3}), "without a results list"),
        (ok(b"<html>maintenance</html>"), "not JSON"),
    ],
)
def test_gbif_and_inaturalist_errors_are_one_clear_line(sample_entities, answer, message):
    e = _entity(sample_entities, gbif_id="1", inaturalist_id="2")
    for cls in (Gbif, INaturalist):
        with ScriptedApi([answer] * 3) as api:
            with pytest.raises(SearchError, match=message) as err:
                cls([e], api.url, requests_per_second=0, retries=1, backoff=0.01).search(noun(e))
            assert "\n" not in str(err.value) and cls.name in str(err.value)


def test_inaturalist_pages_by_id_above_and_keeps_all_rights_reserved_as_unknown(sample_entities):
    e = _entity(sample_entities, inaturalist_id="41964")
    obs = lambda i, lic: {  # noqa: E731
        "id": i,
        "taxon": {"name": "Panthera leo", "preferred_common_name": "Lion"},
        "photos": [
            {
                "id": i * 10,
                "license_code": lic,
                "attribution": f"(c) u{i}",
                "url": f"https://p/{i}/square.jpeg",
            }
        ],
    }
    script = [
        (429, "slow down", {"Retry-After": "0"}),
        ok({"per_page": 2, "results": [obs(5, "cc-by"), obs(9, None)]}),
        ok({"per_page": 2, "results": [obs(12, "cc0")]}),
    ]
    with ScriptedApi(script) as api:
        found = INaturalist(
            [e], api.url, max_results=10, size="large", requests_per_second=0, backoff=0.01
        ).search(noun(e))
        reqs = api.requests
    assert [c.url for c in found] == [
        "https://p/5/large.jpeg",
        "https://p/9/large.jpeg",
        "https://p/12/large.jpeg",
    ]
    assert [c.license for c in found] == ["CC-BY-4.0", "unknown", "CC0-1.0"]
    assert found[0].alt_texts == ("Lion", "Panthera leo") and found[0].page_url.endswith("/observations/5")
    assert [r[1]["id_above"] for r in reqs] == ["0", "0", "9"]
    assert reqs[0][1]["quality_grade"] == "research" and reqs[0][1]["photos"] == "true"
    with pytest.raises(ConfigError, match="photo size"):
        INaturalist([e], api.url, size="huge")


# ---------------------------------------------------------------- the offline readers


def test_gbif_archive_reader_streams_and_joins(world, tmp_path):
    entities, _ = world
    with SampleWeb(entities) as web:
        n = archives.write_gbif_archive(
            web.archives["gbif"], web.entities, tmp_path / "dwca.zip", web.base_url
        )
    keys = gbif.archive_keys(entities)
    occ = dict(gbif.read_occurrences(str(tmp_path / "dwca.zip"), keys))
    media = list(gbif.read_multimedia(str(tmp_path / "dwca.zip")))
    assert len(occ) == n == len(media) and str(10**9) not in occ  # the occurrence of no entity is left out
    by_id: dict = {}
    for k, m in media:
        by_id.setdefault(k, []).append(m)
    cands = [c for k, o in occ.items() for c in gbif.archive_candidates([o], by_id[k])]
    assert len(cands) == n and all(c.backend == "gbif-archive" and c.id_entities for c in cands)
    assert {c.license for c in cands} <= {"CC-BY-4.0", "CC0-1.0", "CC-BY-NC-4.0"}
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ConfigError, match="not a readable zip"):
        list(gbif.read_multimedia(str(bad)))
    with zipfile.ZipFile(tmp_path / "partial.zip", "w") as z:
        z.writestr("occurrence.txt", "gbifID\ttaxonKey\n1\t2\n")
    with pytest.raises(ConfigError, match="has no multimedia.txt"):
        list(gbif.read_multimedia(str(tmp_path / "partial.zip")))


def test_inaturalist_open_data_readers(world, tmp_path):
    entities, _ = world
    with SampleWeb(entities) as web:
        n = archives.write_inaturalist_open_data(web.archives["inaturalist"], web.entities, tmp_path)
    taxa = inaturalist.taxon_entities(entities)
    obs = list(inaturalist.read_observations(inaturalist.data_file(str(tmp_path), "observations"), taxa))
    assert len(obs) == n and all(uuid != "obs-casual" for uuid, _ in obs)  # casual grade left out
    names = dict(inaturalist.read_taxa(inaturalist.data_file(str(tmp_path), "taxa"), taxa))
    assert set(names) == set(taxa)
    with pytest.raises(ConfigError, match="no observers.csv.gz|no taxa.csv.gz"):
        inaturalist.data_file(str(tmp_path / "nothing"), "taxa")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "photos.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ConfigError, match="truncated or not gzip"):
        list(inaturalist.read_photos(str(tmp_path / "broken" / "photos.csv.gz")))


# ---------------------------------------------------------------- harvests from several sources


@pytest.fixture(scope="module")
def mixed_harvest(world, tmp_path_factory):
    """One harvest from web search, GBIF's API and a GBIF archive, iNaturalist open data and
    Commons categories, with non-commercial licences excluded."""
    entities, queries = world
    root = tmp_path_factory.mktemp("mixed")
    with SampleWeb(entities, seed=3) as web:
        archives.write_gbif_archive(web.archives["gbif"], web.entities, root / "dwca.zip", web.base_url)
        archives.write_inaturalist_open_data(web.archives["inaturalist"], web.entities, root / "inat")
        spec = harvest.SearchSpec(
            backend="searxng,gbif,commons-category,inaturalist-open-data",
            url=web.base_url,
            max_results=6,
            requests_per_second=0,
            entities=tuple(entities),
            endpoints=(
                ("gbif", web.base_url),
                ("commons-category", web.base_url + "/w/api.php"),
                ("inaturalist-open-data", web.base_url + "/photos"),
            ),
            inaturalist_data=str(root / "inat"),
        )
        out = root / "shards"
        stats = harvest_pipeline.run(
            queries, spec, options(exclude_licenses="*-nc"), str(out), entities=entities
        )
        archive_spec = harvest.SearchSpec(
            backend="gbif-archive", entities=tuple(entities), gbif_archive=str(root / "dwca.zip")
        )
        archive_stats = harvest_pipeline.run(
            queries, archive_spec, options(), str(root / "archive"), entities=entities
        )
        truth = {p.image.id: p for ps in web.archives.values() for x in ps.values() for p in x}
    return root, stats, archive_stats, truth


def test_mixed_harvest_counts_licence_exclusions_and_writes_provenance(mixed_harvest):
    root, stats, _, truth = mixed_harvest
    out = root / "shards"
    outcomes = harvest.read_outcomes(str(out))
    excluded = [o for o in outcomes if o.outcome == "license_excluded"]
    nc = [c for c in harvest.read_candidates(str(out)) if c.license.startswith("CC-BY-NC")]
    assert excluded and {o.url for o in excluded} == {c.url for c in nc}  # counted, never fetched
    assert stats["per_outcome"]["license_excluded"] == len(excluded) and stats["fetched"] == stats[
        "candidates"
    ] - len(excluded)
    records = [r for s in ("train", "validation", "test") for r in iter_records(out, s)]
    assert not any(r.license.startswith("CC-BY-NC") for r in records)
    assert set(stats["per_source"]) == {"searxng", "gbif", "commons-category", "inaturalist-open-data"}
    assert sum(stats["per_license"].values()) == len(records)
    for r in records:
        image_id = r.url.split("/img/")[-1].split("/photos/")[-1].split(".jpg")[0].split("/")[0]
        if image_id in truth:  # an archive photo: its licence and author as the archive has them
            assert r.license == normalize(truth[image_id].license) and truth[image_id].author in r.attribution
            assert r.id_entities == r.entity_ids == (truth[image_id].image.entity_id,)
            assert any(x.why == "identifier" for x in r.links)
        else:
            assert r.license == "unknown" and r.sources == ("searxng",)
        assert r.provenance and {p.url for p in r.provenance} == set(r.urls)
    rows = []
    for f in sorted(glob.glob(str(out / "attribution" / "*.tsv"))):
        with open(f, newline="") as fh:
            lines = fh.read().splitlines()
        assert lines[0] == ATTRIBUTION_HEADER
        rows += [line.split("\t") for line in lines[1:]]
    assert len(glob.glob(str(out / "attribution" / "*.tsv"))) == 6  # one per shard file, empty ones too
    assert sorted(r[0] for r in rows) == sorted(r.key for r in records)
    card = (out / "DATACARD.md").read_text()
    assert "## Licences and sources" in card and "| inaturalist-open-data |" in card
    assert "| CC-BY-SA-4.0 |" in card and "attribution/" in card


def test_gbif_archive_harvest(mixed_harvest):
    root, _, stats, truth = mixed_harvest
    records = [r for s in ("train", "validation", "test") for r in iter_records(root / "archive", s)]
    assert records and set(stats["per_source"]) == {"gbif-archive"}
    assert all(r.links and all(x.identifier for x in r.links) for r in records)
    assert stats["written"] == len(records) == sum(1 for p in truth.values() if p.source == "gbif")


@pytest.mark.slow
def test_provenance_survives_curation_and_reads_through_tfds_and_grain(mixed_harvest, world):
    import grain
    import tensorflow_datasets as tfds

    root, _, _, _ = mixed_harvest
    entities, _ = world
    opts = CurateOptions(t=2, num_shards=2)
    stats = curate_pipeline.run(str(root / "shards"), entities, [], opts, str(root / "curated"))
    kept = [r for s in ("train", "validation", "test") for r in iter_records(root / "curated", s)]
    assert (
        sum(stats["per_license"].values()) == len(kept)
        and "## Licences and sources" in (root / "curated" / "DATACARD.md").read_text()
    )
    before = {r.key: r for s in ("train", "validation", "test") for r in iter_records(root / "shards", s)}
    for r in kept:
        assert r.provenance and r.license and set(before[r.key].sources) <= set(r.sources)
    assert len(glob.glob(str(root / "curated" / "attribution" / "*.tsv"))) == 6
    ex = tfds.builder_from_directory(str(root / "curated")).as_data_source("train")[0]
    assert ex["license"] and json.loads(ex["provenance"])
    source = grain.sources.ArrayRecordDataSource([str(p) for p in shard_paths(root / "curated", "train")])
    r = decode_image(source[0])
    assert r.provenance and r.license in {p.license for p in r.provenance} and r.key in before


# ---------------------------------------------------------------- records


def _record(key: str, sha: str, url: str, lic: str, source: str, who: str) -> ImageRecord:
    return record(
        key, url, jpeg=b"x", sha256=sha, license=lic, attribution=who,
        provenance=(Provenance(source, url, f"{url}/page", lic, "", who),),
    )  # fmt: skip


def test_merging_keeps_every_source_and_the_most_open_licence_of_the_same_bytes():
    a = _record("k1", "s1", "https://a/1.jpg", "unknown", "searxng", "")
    b = _record("k1", "s1", "https://b/1.jpg", "CC-BY-4.0", "gbif", "Ann")
    near = _record("k2", "s2", "https://c/2.jpg", "CC0-1.0", "inaturalist", "Bob")
    exact = merge_images(a, [b])
    assert (exact.license, exact.attribution) == ("CC-BY-4.0", "Ann") and exact.sources == ("gbif", "searxng")
    merged = merge_images(exact, [near])  # a near-duplicate: other bytes, so not its licence
    assert (merged.license, merged.attribution) == ("CC-BY-4.0", "Ann")
    assert merged.sources == ("gbif", "inaturalist", "searxng") and len(merged.provenance) == 3
    back = decode_image(encode_image(replace_jpeg(merged)))
    assert (back.provenance, back.license, back.attribution, back.sources) == (
        merged.provenance,
        merged.license,
        merged.attribution,
        merged.sources,
    )


def replace_jpeg(r: ImageRecord) -> ImageRecord:
    import io
    from dataclasses import replace

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "JPEG")
    return replace(r, jpeg=buf.getvalue())


def test_candidates_merged_by_url_credit_the_most_open_source_and_cache_keeps_licences():
    web = Candidate("https://x/1.jpg", backend="searxng", query_ids=("q1",), entity_ids=("Q1",))
    gb = Candidate(
        "https://x/1.jpg",
        backend="gbif",
        license="CC0-1.0",
        attribution="Ann",
        query_ids=("q2",),
        entity_ids=("Q1",),
        id_entities=("Q1",),
    )
    (m,) = merge_candidates([web, gb])
    assert (m.backend, m.license, m.attribution, m.id_entities) == ("gbif", "CC0-1.0", "Ann", ("Q1",))
    (back,) = decode_search_answer(encode_search_answer([gb]), "q2", ("Q1",))
    assert (back.license, back.attribution, back.id_entities) == ("CC0-1.0", "Ann", ("Q1",))


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"backend": "gbif"}, "needs --entities"),
        ({"backend": "searxng,searxng", "url": "http://x"}, "name each backend once"),
        ({"backend": "searxng,flickr", "url": "http://x"}, "unknown search backend 'flickr'"),
        ({"backend": "gbif-archive", "entities": "E"}, "needs --gbif-archive"),
        ({"backend": "inaturalist-open-data", "entities": "E"}, "needs --inaturalist-data"),
        (
            {"backend": "searxng", "url": "http://x", "endpoints": (("gbif", "http://y"),)},
            "not among --backend",
        ),
        (
            {
                "backend": "pool,searxng",
                "url": "http://x",
                "pool": "p.jsonl",
                "balance_t": 3,
                "entities": "E",
            },
            "pool alone",
        ),
    ],
)
def test_bad_source_configs_are_refused(sample_entities, kw, message):
    if kw.get("entities") == "E":
        kw["entities"] = tuple(sample_entities[:2])
    with pytest.raises(ConfigError, match=message):
        harvest.SearchSpec(**kw)


def test_unknown_licence_family_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="did you mean cc-by-sa"):
        options(licenses="cc-by-sa,cc-bysa")
    with pytest.raises(ConfigError, match="matches no licence family"):
        options(exclude_licenses="*-xx")


def test_endpoints_per_backend():
    spec = harvest.SearchSpec(
        backend="searxng,gbif", url="http://s", endpoints=(("gbif", "http://g"),), entities=(None,)
    )
    assert (spec.endpoint("searxng"), spec.endpoint("gbif")) == ("http://s", "http://g")
    one = harvest.SearchSpec(backend="gbif", url="http://g2", entities=(None,))
    assert one.endpoint("gbif") == "http://g2" and one.query_backends == ("gbif",)
    assert (
        harvest.SearchSpec(backend="gbif-archive", gbif_archive="a.zip", entities=(None,)).query_backends
        == ()
    )
