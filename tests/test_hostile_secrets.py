"""Secrets in URLs: a pool URL with `user:password@` is never fetched and never written; a URL with
a key in its query string is fetched as given, and every file the harvest writes for others (shards,
attribution, candidates, outcomes, hosts, stats, data card) shows it with the key `REDACTED`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import rendered
from hostile import tried
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackHandler

from beam_pipelines import harvest as harvest_pipeline
from entitynet import harvest
from entitynet.fetch.fetcher import FetchOptions
from entitynet.fetch.policy import AddressPolicy
from entitynet.records import Query
from entitynet.shards import iter_records
from entitynet.urls import REDACTED, has_credentials, public_url, without_credentials

PASSWORD, KEY, SIGNATURE, TOKEN = "hunter2pw", "k3yV4lue", "s1gn4ture", "t0kenv4l"


def test_public_url_removes_userinfo_and_secret_parameters():
    cases = {
        "http://u:p@h.example/x.jpg": "http://h.example/x.jpg",
        "https://user@h.example:8443/x": "https://h.example:8443/x",
        "http://a@b@h.example/x": "http://h.example/x",
        "//u:p@h.example/x": "//h.example/x",
        "http://h.example/p@x.jpg": "http://h.example/p@x.jpg",  # an @ in the path is not userinfo
        "http://h.example/x?api_key=1&w=2": f"http://h.example/x?api_key={REDACTED}&w=2",
        "http://h.example/x?X-Amz-Signature=ab&X-Amz-Credential=c%2F&X-Amz-Date=1": (
            f"http://h.example/x?X-Amz-Signature={REDACTED}&X-Amz-Credential={REDACTED}&X-Amz-Date=1"
        ),
        "http://h.example/x?sv=1&sig=abc": f"http://h.example/x?sv=1&sig={REDACTED}",
        "http://h.example/x?subscription-key=9&token=": f"http://h.example/x?subscription-key={REDACTED}&token=",
        "http://h.example/x#access_token=zz&state=1": f"http://h.example/x#access_token={REDACTED}&state=1",
        "http://h.example/x?monkey=1&keyword=fox": "http://h.example/x?monkey=1&keyword=fox",
        "http://[::1/x": "http://[::1/x",  # unparseable: left as it is, nothing to remove
        "": "",
    }
    for url, wanted in cases.items():
        tried("url secrets")
        assert public_url(url) == wanted, url
    assert has_credentials("http://u:p@h/x") and not has_credentials("http://h/p@x")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from(["http://", "https://", "//"]),
    st.text(st.characters(blacklist_characters="/?#@"), max_size=8),
    st.text(st.characters(blacklist_characters="/?#@"), min_size=1, max_size=8),
    st.text(max_size=12),
)
def test_userinfo_never_survives_public_url(scheme, user, host, rest):
    tried("url secrets")
    url = f"{scheme}{user}:{PASSWORD}@{host}/{rest}"
    out = public_url(url)
    assert not has_credentials(out)
    assert f":{PASSWORD}@" not in out
    assert without_credentials(without_credentials(url)) == without_credentials(url)


class Images(LoopbackHandler):
    seen: list = []
    jpeg = b""

    def do_GET(self):
        Images.seen.append((self.path, self.headers.get("Authorization")))
        if self.url_path == "/robots.txt":
            self.send(404, b"", "text/plain")
        elif self.url_path == "/redirect":
            self.send(
                302,
                b"",
                headers={"Location": f"http://u:{PASSWORD}@127.0.0.1:{self.server.server_address[1]}/x.jpg"},
            )
        else:
            self.send(200, Images.jpeg)


@pytest.fixture(scope="module")
def harvested_secrets(tmp_path_factory, sample_entities):
    from loopback import LoopbackServer

    lion = next(e for e in sample_entities if e.label == "lion")
    Images.seen, Images.jpeg = [], rendered(lion, 0, (96, 80)).jpeg
    with LoopbackServer(Images) as srv:
        base = srv.base
        rows = [
            {
                "url": f"http://user:{PASSWORD}@127.0.0.1:{srv.port}/locked.jpg",
                "text": "a lion",
                "page_url": f"{base}/p?session={TOKEN}",
            },
            {"url": f"{base}/signed.jpg?X-Amz-Signature={SIGNATURE}&api_key={KEY}&w=1", "text": "a lion"},
            {"url": f"{base}/redirect", "text": "a lion"},
        ]
        d = tmp_path_factory.mktemp("secrets")
        pool = d / "pool.jsonl"
        pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
        fetch = FetchOptions(address=AddressPolicy(allow_loopback=True), retries=0)
        queries = [Query(id="q1", text="lion", kind="noun", entity_ids=(lion.id,))]
        stats = harvest_pipeline.run(
            queries,
            harvest.SearchSpec(backend="pool", pool=str(pool)),
            harvest.HarvestOptions(fetch=fetch, num_shards=1),
            str(d / "out"),
        )
    return d / "out", stats, base


def test_credentials_are_never_sent_and_keys_reach_only_the_server(harvested_secrets):
    tried("url secrets", 3)
    out, stats, base = harvested_secrets
    assert all(auth is None for _, auth in Images.seen), Images.seen
    paths = [p for p, _ in Images.seen]
    assert not any(p.startswith("/locked.jpg") for p in paths)  # refused before any request
    assert paths.count("/x.jpg") == 0  # the redirect to a URL with credentials is refused too
    assert f"/signed.jpg?X-Amz-Signature={SIGNATURE}&api_key={KEY}&w=1" in paths  # fetched as given
    outcomes = {o.url: o for o in harvest.read_outcomes(str(out))}
    assert outcomes[f"{base}/locked.jpg"].outcome == "bad_url"
    assert "never sent" in outcomes[f"{base}/locked.jpg"].detail
    assert outcomes[f"{base}/redirect"].outcome == "bad_url"
    assert (
        outcomes[f"{base}/signed.jpg?X-Amz-Signature={REDACTED}&api_key={REDACTED}&w=1"].outcome == "written"
    )
    (record,) = iter_records(str(out), "train") if stats["written"] else ()
    assert record.url.endswith(f"api_key={REDACTED}&w=1") and all(
        REDACTED in p.url for p in record.provenance
    )


def test_nothing_the_harvest_publishes_holds_a_secret(harvested_secrets):
    """Every file of the harvest but its own work files (fetch_work/, search_cache/), byte by byte."""
    out, _, _ = harvested_secrets
    checked = 0
    for path in Path(out).rglob("*"):
        if not path.is_file() or path.relative_to(out).parts[0] in ("fetch_work", "search_cache"):
            continue
        data = path.read_bytes()
        for secret in (PASSWORD, KEY, SIGNATURE, TOKEN):
            tried("url secrets")
            assert secret.encode() not in data, f"{secret} in {path}"
        checked += 1
    assert checked >= 6  # shards, attribution, candidates, outcomes, hosts, stats, ...
