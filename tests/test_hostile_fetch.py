"""Hostile input at the fetch boundary: any string as a URL, servers that trickle headers or
robots.txt, compressed bombs, robots.txt redirects and outages, and IPv6 forms that hide an IPv4
address. Each case ends in bytes or exactly one documented reason, within the deadline."""

import gzip
import io
import socket
import time
import tracemalloc
import zlib

import pytest
from hostile import tried
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import LoopbackHandler, LoopbackServer
from PIL import Image
from test_fetch import fetcher
from test_harvest import FETCH_REASONS as HARVEST_FETCH_REASONS

from entitynet import harvest
from entitynet.fetch import fetcher as fetcher_module
from entitynet.fetch.fetcher import TRANSIENT
from entitynet.fetch.policy import AddressPolicy
from entitynet.images.process import REASONS, ImageOptions
from entitynet.records import Candidate, Outcome


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 80), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


JPEG = jpeg()
FETCH_REASONS = HARVEST_FETCH_REASONS | {"http_403", "http_410", *TRANSIENT}


class Site:
    """One origin on 127.0.0.1 whose robots.txt behaves as told: "ok", "none" (404), "down" (503),
    "trickle", "bomb" (gzip, decompressing to 64 MiB), "redirect" (to a file that disallows /img),
    "redirect6" (six hops), "deny" (disallows /img)."""

    def __init__(self, robots: str = "ok"):
        self.robots, self.hits, self.encodings = robots, {}, {}
        site = self

        class Handler(LoopbackHandler):
            def trickle_headers(self, seconds):
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                end = time.monotonic() + seconds
                i = 0
                while time.monotonic() < end:
                    try:
                        self.wfile.write(f"X-Slow-{i}: {'a' * 10}\r\n".encode())
                        self.wfile.flush()
                    except OSError:
                        return
                    i += 1
                    time.sleep(0.2)

            def do_GET(self):
                path = self.path
                site.hits[path] = site.hits.get(path, 0) + 1
                site.encodings[path] = self.headers.get("Accept-Encoding")
                if path == "/robots.txt":
                    return self.robots_txt()
                if path.startswith("/robots-hop"):
                    n = int(path.rsplit("-", 1)[1])
                    return self.send(301, b"", "text/plain", [("Location", f"/robots-hop-{n + 1}")])
                if path == "/real-robots.txt":
                    return self.send(200, b"User-agent: *\nDisallow: /img\n", "text/plain")
                if path == "/img.jpg":
                    return self.send(200, JPEG)
                if path == "/gzip.jpg":
                    return self.send(200, gzip.compress(JPEG), headers=[("Content-Encoding", "gzip")])
                if path == "/deflate.jpg":
                    return self.send(200, zlib.compress(JPEG), headers=[("Content-Encoding", "deflate")])
                if path == "/rawdeflate.jpg":
                    z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                    body = z.compress(JPEG) + z.flush()
                    return self.send(200, body, headers=[("Content-Encoding", "deflate")])
                if path == "/bomb.jpg":
                    return self.send(200, _BOMB, headers=[("Content-Encoding", "gzip")])
                if path == "/br.jpg":
                    return self.send(200, JPEG, headers=[("Content-Encoding", "br")])
                if path == "/badgzip.jpg":
                    return self.send(200, b"not gzip at all", headers=[("Content-Encoding", "gzip")])
                if path == "/slow-headers.jpg":
                    return self.trickle_headers(30)
                if path == "/bad-location":
                    return self.send(302, b"", "text/plain", [("Location", "http://[::1/img.jpg")])
                return self.send(404, b"", "text/plain")

            def robots_txt(self):
                kind = site.robots
                if kind == "ok":
                    return self.send(200, b"User-agent: *\nAllow: /\n", "text/plain")
                if kind == "deny":
                    return self.send(200, b"User-agent: *\nDisallow: /img\n", "text/plain")
                if kind == "none":
                    return self.send(404, b"", "text/plain")
                if kind == "down":
                    return self.send(503, b"", "text/plain")
                if kind == "trickle":
                    return self.trickle_headers(30)
                if kind == "bomb":
                    return self.send(200, _BOMB, "text/plain", [("Content-Encoding", "gzip")])
                if kind == "redirect":
                    return self.send(301, b"", "text/plain", [("Location", "/real-robots.txt")])
                if kind == "redirect6":
                    return self.send(301, b"", "text/plain", [("Location", "/robots-hop-1")])
                raise AssertionError(kind)

        self.server = LoopbackServer(Handler)
        self.base = self.server.base

    def close(self):
        self.server.close()


_BOMB = gzip.compress(b"#" * (64 << 20), compresslevel=9)  # 64 MiB of comment in ~64 KiB


@pytest.fixture
def site(request):
    s = Site(getattr(request, "param", "ok"))
    yield s
    s.close()


# ---------------------------------------------------------------- any string is a URL

MALFORMED = [
    "http://[::1/img.jpg",
    "http://[::1]:99999/img.jpg",
    "http://127.0.0.1:0x50/img.jpg",
    "http://exa mple.com/img.jpg",
    "http://a..b/img.jpg",
    "http://" + "a" * 300 + ".com/img.jpg",
    "http:///img.jpg",
    "http://",
    "ftp://example.com/img.jpg",
    "javascript:alert(1)",
    "//example.com/img.jpg",
    "",
    "   ",
    "http://[fe80::1%25eth0]/img.jpg",
    "http://ex\x00ample.com/img.jpg",
    "http://\udcff.com/img.jpg",
    "http://user:pa@ss@[::1/x",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_bad_url_never_an_exception(url):
    tried("malformed URL")
    r = fetcher().fetch(url)
    assert r.reason in ("bad_url", "blocked_address", "connection_error"), (r.reason, r.detail)
    assert r.data is None


def test_the_reported_url_is_bad_url_in_a_whole_harvest_step():
    tried("malformed URL in a harvest")
    f = fetcher()
    got = harvest.fetch_and_process(f, Candidate(url="http://[::1/img.jpg"), ImageOptions())
    assert isinstance(got, Outcome) and got.outcome == "bad_url" and got.host
    assert harvest.host_of("http://[::1/img.jpg") == "(invalid)"


def test_a_redirect_to_a_malformed_location_is_bad_url(site):
    tried("malformed redirect")
    r = fetcher().fetch(site.base + "/bad-location")
    assert r.reason == "bad_url", r.detail


@pytest.fixture(scope="module")
def no_dns():
    """No DNS on a test machine: names other than localhost fail at once, as a real failure would."""
    real = socket.getaddrinfo

    def fake(host, *a, **kw):
        if host in ("127.0.0.1", "localhost", "::1") or (host or "").replace(".", "").isdigit():
            return real(host, *a, **kw)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    socket.getaddrinfo = fake
    yield
    socket.getaddrinfo = real


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(lambda s: "http://" + s, st.text(max_size=60)),
        st.builds(lambda s: "https://[" + s, st.text(max_size=40)),
        st.builds(
            lambda h, p: f"http://{h}/{p}",
            st.from_regex(r"[a-z0-9\[\]:.%@-]{0,30}", fullmatch=True),
            st.text(max_size=20),
        ),
    )
)
def test_any_string_ends_in_one_documented_outcome(no_dns, url):
    tried("property: arbitrary URL")
    got = harvest.fetch_and_process(_FAST, Candidate(url=url), ImageOptions())
    assert isinstance(got, Outcome)
    assert got.outcome in FETCH_REASONS | set(REASONS), (url, got)
    assert isinstance(harvest.host_of(url), str)


_FAST = fetcher(total_timeout=1.0, retries=0, connect_timeout=0.3, address=AddressPolicy())


# ---------------------------------------------------------------- one deadline for everything


@pytest.mark.parametrize("site", ["ok", "trickle"], indirect=True)
def test_the_deadline_covers_trickled_headers_and_robots_txt(site):
    tried("trickling server")
    path = "/slow-headers.jpg" if site.robots == "ok" else "/img.jpg"
    t = time.monotonic()
    r = fetcher(total_timeout=2.0, read_timeout=5.0).fetch(site.base + path)
    elapsed = time.monotonic() - t
    assert r.reason == "timeout", (r.reason, r.detail)
    assert elapsed < 3.5, elapsed  # the server would have trickled for 30 s


# ---------------------------------------------------------------- robots.txt as RFC 9309 asks


@pytest.mark.parametrize("site", ["bomb"], indirect=True)
def test_a_robots_txt_bomb_is_read_to_500_kib_only(site):
    tried("robots.txt bomb")
    tracemalloc.start()
    try:
        r = fetcher(total_timeout=10).fetch(site.base + "/img.jpg")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.ok, (r.reason, r.detail)  # 500 KiB of comments: no rule, allowed
    assert peak < 8 << 20, peak  # the 64 MiB it decompresses to was never held


@pytest.mark.parametrize(
    "site,reason",
    [("redirect", "robots_disallowed"), ("redirect6", None), ("none", None), ("deny", "robots_disallowed")],
    indirect=["site"],
)
def test_robots_txt_redirects_and_absence(site, reason):
    tried("robots.txt redirect or absence")
    r = fetcher().fetch(site.base + "/img.jpg")
    assert r.reason == reason, (r.reason, r.detail)
    if site.robots == "redirect6":
        assert site.hits.get("/robots-hop-5") == 1 and "/robots-hop-6" not in site.hits  # five hops, no more


@pytest.mark.parametrize("site", ["down"], indirect=True)
def test_robots_txt_outage_disallows_for_now_and_is_asked_again(site, monkeypatch):
    tried("robots.txt outage")
    monkeypatch.setattr(fetcher_module, "ROBOTS_RETRY_SECONDS", 0.5)
    f = fetcher(retries=0)
    first = f.fetch(site.base + "/img.jpg")
    assert first.reason == "robots_unavailable" and "503" in first.detail
    assert f.fetch(site.base + "/img.jpg").reason == "robots_unavailable"
    assert site.hits["/robots.txt"] == 1  # remembered for a while
    site.robots = "ok"
    time.sleep(0.6)
    assert f.fetch(site.base + "/img.jpg").ok and site.hits["/robots.txt"] == 2
    assert "robots_unavailable" in TRANSIENT  # --retry-failed fetches these again


def test_refused_connection_and_dns_failure_are_named_as_such(no_dns):
    tried("unreachable host", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    refused = fetcher(retries=0).fetch(f"http://127.0.0.1:{port}/img.jpg")
    assert refused.reason == "connection_error" and "refused" in refused.detail, refused.detail
    unknown = fetcher(retries=0).fetch("http://no-such-host.example/img.jpg")
    assert unknown.reason == "connection_error" and "resolve" in unknown.detail, unknown.detail


# ---------------------------------------------------------------- content encodings


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/gzip.jpg", None),
        ("/deflate.jpg", None),
        ("/rawdeflate.jpg", None),
        ("/bomb.jpg", "too_large"),
        ("/br.jpg", "bad_encoding"),
        ("/badgzip.jpg", "bad_encoding"),
    ],
)
def test_compressed_images_are_decoded_within_the_size_cap(site, path, reason):
    tried("content encoding")
    r = fetcher(max_bytes=1 << 20).fetch(site.base + path)
    assert r.reason == reason, (r.reason, r.detail)
    if reason is None:
        assert r.data == JPEG


def test_we_advertise_only_the_encodings_we_decode(site):
    assert fetcher().fetch(site.base + "/img.jpg").ok
    assert site.encodings["/img.jpg"] == "gzip, deflate" == fetcher_module.ACCEPT_ENCODING


# ---------------------------------------------------------------- the address guard

EMBEDDED = [
    ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4 of the metadata address
    ("2002:7f00:1::1", "127.0.0.1"),
    ("2002:0a00:0001::1", "10.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64
    ("64:ff9b::7f00:1", "127.0.0.1"),
    ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),  # local-use NAT64
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo (client de-obfuscated)
    ("::ffff:169.254.169.254", "169.254.169.254"),
]


@pytest.mark.parametrize("address,inner", EMBEDDED)
def test_ipv6_forms_are_judged_by_the_ipv4_inside(address, inner):
    tried("address guard")
    why = AddressPolicy(allow_private=True).refusal(address)
    if inner in ("10.0.0.1", "192.0.2.45"):  # private inside: allowed only with allow_private
        assert why is None and AddressPolicy().refusal(address)
    else:
        assert why and inner in why


@pytest.mark.parametrize("address", ["192.0.0.1", "192.0.0.170", "fec0::1", "fec0:1234::5"])
def test_protocol_block_and_site_local_are_refused_even_with_private_allowed(address):
    tried("address guard")
    assert AddressPolicy(allow_private=True, allow_loopback=True).refusal(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "2002:0808:0808::1", "64:ff9b::808:808"])
def test_public_addresses_pass(address):
    assert AddressPolicy().refusal(address) is None


# ---------------------------------------------------------------- credentials in URLs are never sent


class Recorder(LoopbackHandler):
    """Records every request's path and Authorization header; /to-creds redirects to a URL with
    credentials, and robots.txt does too when `robots_to_creds` is set."""

    hits: list = []
    robots_to_creds = False

    def do_GET(self):
        cls = type(self)
        cls.hits.append((self.path, self.headers.get("Authorization")))
        creds = f"http://user:secret-pw@127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/robots.txt":
            if cls.robots_to_creds:
                return self.send(301, b"", "text/plain", [("Location", creds + "/real-robots.txt")])
            return self.send(200, b"User-agent: *\nAllow: /\n", "text/plain")
        if self.path == "/to-creds":
            return self.send(302, b"", "text/plain", [("Location", creds + "/x.jpg")])
        if self.path in ("/x.jpg", "/real-robots.txt"):
            return self.send(200, JPEG if self.path == "/x.jpg" else b"User-agent: *\nDisallow: /\n")
        return self.send(404, b"", "text/plain")


@pytest.fixture(scope="module")
def recorded():
    """One recording server for the module (starting and stopping one costs half a second)."""
    handler = type("Recorded", (Recorder,), {"hits": []})
    with LoopbackServer(handler) as server:
        yield server, handler


def recorder(recorded, robots_to_creds: bool = False):
    server, handler = recorded
    handler.hits.clear()
    handler.robots_to_creds = robots_to_creds
    return server, handler.hits


@pytest.mark.parametrize(
    "authority",
    [
        "user:secret-pw@{host}",
        "user@{host}",
        ":secret-pw@{host}",
        "@{host}",
        "u%40x:secret-pw@{host}",
        "user:secret-pw@{host}@{host}",
        "{host}\\@user:secret-pw",
    ],
)
def test_a_url_with_credentials_is_refused_before_any_request(recorded, authority):
    tried("credentials in URL")
    server, hits = recorder(recorded)
    url = "http://" + authority.format(host=f"127.0.0.1:{server.port}") + "/x.jpg"
    r = fetcher().fetch(url)
    assert r.reason == "bad_url" and "credentials in URLs are never sent" in r.detail, (r.reason, r.detail)
    assert "secret-pw" not in r.detail and r.data is None
    got = harvest.fetch_and_process(fetcher(), Candidate(url=url), ImageOptions())
    assert isinstance(got, Outcome) and got.outcome == "bad_url" and "secret-pw" not in got.detail
    assert hits == []  # not even robots.txt was asked for


def test_a_redirect_to_a_url_with_credentials_is_refused(recorded):
    tried("credentials in URL")
    server, hits = recorder(recorded)
    r = fetcher().fetch(server.base + "/to-creds")
    assert r.reason == "bad_url" and "credentials in URLs are never sent" in r.detail, (r.reason, r.detail)
    assert "secret-pw" not in r.detail
    assert [p for p, _ in hits] == ["/robots.txt", "/to-creds"]  # the Location was never requested
    assert all(auth is None for _, auth in hits)


def test_a_robots_txt_redirect_with_credentials_is_not_followed(recorded):
    tried("credentials in URL")
    server, hits = recorder(recorded, robots_to_creds=True)
    r = fetcher().fetch(server.base + "/x.jpg")
    assert r.ok, (r.reason, r.detail)  # robots.txt unavailable by redirect: no restrictions
    assert [p for p, _ in hits] == ["/robots.txt", "/x.jpg"] and all(auth is None for _, auth in hits)
