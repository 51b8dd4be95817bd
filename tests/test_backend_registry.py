"""The search backends' registry: every backend is declared once, by its own module, and the
spec's checks, the command line's flags, the search cache's key and opening all come from the
declarations. A new backend is one declaration: the test below adds one and harvests with it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from entitynet.errors import ConfigError
from entitynet.harvest import SearchSpec, search_settings
from entitynet.records import Candidate, Entity, Query, write_jsonl
from entitynet.search import registry
from entitynet.search.registry import Backend, Option
from entitynet_cli.harvest import backend_summary
from entitynet_cli.main import main
from tests.loopback import LoopbackHandler

SHIPPED = {
    "searxng", "google-cse", "brave", "commons", "commons-category", "gbif", "inaturalist", "pool",
    "gbif-archive", "inaturalist-open-data",
}  # fmt: skip


def test_the_registry_lists_every_shipped_backend_once():
    assert set(registry.names()) == SHIPPED and len(registry.names()) == len(SHIPPED)
    assert [b.group for b in registry.backends()] == sorted(
        (b.group for b in registry.backends()), key=list(registry.GROUPS).index
    )
    whole = {b.name for b in registry.backends() if b.reads_whole}
    assert whole == {"pool", "gbif-archive", "inaturalist-open-data"}
    flags = [o.flag for o, _ in registry.options()]
    assert len(flags) == len(set(flags))
    assert dict((o.flag, users) for o, users in registry.options())["--photo-size"] == (
        "inaturalist",
        "inaturalist-open-data",
    )
    for name in SHIPPED:
        assert name in backend_summary()


def test_a_backend_s_declaration_decides_the_spec_s_checks():
    with pytest.raises(ConfigError, match="unknown search backend 'flickr': use one of brave, google-cse"):
        SearchSpec(backend="flickr")
    with pytest.raises(ConfigError, match="--category-depth must be within 0..10, got 11"):
        SearchSpec(backend="commons-category", entities_file="e.jsonl", category_depth=11)
    # an option of a backend not selected is not its business
    SearchSpec(backend="searxng", url="http://x", category_depth=11)
    with pytest.raises(ConfigError, match="needs --gbif-archive FILE.zip"):
        SearchSpec(backend="gbif-archive", entities_file="e.jsonl")


def test_registering_a_name_twice_is_refused():
    first = registry.get("brave")
    with pytest.raises(ValueError, match="declared twice"):
        registry.register(Backend("brave", "another", "web"))
    assert registry.get("brave") is first


# ---------------------------------------------------------------- a new backend: one declaration


class _Photos(LoopbackHandler):
    """A photo API of its own kind: /search?q=TEXT answers {"photos": [url, ...]}; /img/N.png a picture."""

    def do_GET(self):
        if self.path.startswith("/search"):
            text = self.path.split("q=", 1)[1]
            urls = [f"{self.server_base}/img/{text}-{i}.png" for i in range(3)]
            self.send(200, json.dumps({"photos": urls}).encode(), ctype="application/json")
        elif self.path.startswith("/img/"):
            b = io.BytesIO()
            shade = sum(self.path.encode()) % 200
            Image.new("RGB", (96, 80), (shade, 255 - shade, 40)).save(b, "PNG")
            self.send(200, b.getvalue(), ctype="image/png")
        else:
            self.send(404, b"", ctype="text/plain")


class PhotoApi:
    """The new backend's search: its module would hold this class and the `register` call below."""

    name = "test-photos"
    modifiers: frozenset[str] = frozenset()

    def __init__(self, base: str, per_query: int):
        self.base, self.per_query = base, per_query

    def search(self, query: Query) -> list[Candidate]:
        import urllib.request

        with urllib.request.urlopen(f"{self.base}/search?q={query.text.replace(' ', '_')}") as r:
            urls = json.load(r)["photos"][: self.per_query]
        return [
            Candidate(url=u, alt_texts=(query.text,), query_ids=(query.id,), entity_ids=query.entity_ids,
                      ranks=(i,), backend=self.name)
            for i, u in enumerate(urls)
        ]  # fmt: skip


@pytest.fixture
def photo_backend():
    declared = Backend(
        "test-photos",
        "a photo API of the tests",
        "web",
        options=(
            Option("photos_url", "--photos-url", "the API's base URL", metavar="URL"),
            Option("photos_per_query", "--photos-per-query", "photos per query", int, 2, low=1, high=3),
        ),
        open=lambda spec, entities, queries, url: PhotoApi(
            spec.option("photos_url"), spec.option("photos_per_query")
        ),
        check=lambda spec: (
            "" if spec.option("photos_url") else "the test-photos backend needs --photos-url URL"
        ),
        settings=lambda spec, store: {"photos": [spec.option("photos_url"), spec.option("photos_per_query")]},
    )
    registry.register(declared)
    yield declared
    registry._REGISTRY.pop("test-photos")


def test_a_new_backend_is_checked_by_its_declaration(photo_backend):
    with pytest.raises(ConfigError, match="needs --photos-url URL"):
        SearchSpec(backend="test-photos")
    with pytest.raises(ConfigError, match="--photos-per-query must be within 1..3, got 7"):
        SearchSpec(backend="test-photos", options=(("photos_url", "http://x"), ("photos_per_query", 7)))
    spec = SearchSpec(backend="test-photos", options=(("photos_url", "http://x"), ("photos_per_query", 3)))
    assert search_settings(spec)["photos"] == ["http://x", 3]  # its options key the search cache
    assert isinstance(spec.open_all()[0], PhotoApi)


def test_a_new_backend_harvests_through_the_command_line(photo_backend, loopback, tmp_path, capsys):
    handler = type("Photos", (_Photos,), {})
    server = loopback(handler)
    handler.server_base = server.base
    entities = tmp_path / "entities.jsonl"
    write_jsonl(entities, [Entity(id="Q900001", label="ladybird", kind="taxon", root="Q900001")])
    assert main(["queries", "--entities", str(entities), "--out", str(tmp_path / "q")]) == 0
    out = tmp_path / "shards"
    argv = [
        "harvest", "--queries", str(tmp_path / "q" / "queries.jsonl"), "--entities", str(entities),
        "--backend", "test-photos", "--photos-url", server.base, "--photos-per-query", "3",
        "--allow-loopback", "--ignore-robots-txt", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "3 candidate images: downloaded 3; 3 written" in printed
    config = json.loads(Path(out / "harvest_config.json").read_text())
    assert ["photos_per_query", 3] in config["search"]["options"]
