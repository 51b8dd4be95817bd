"""The fetcher against a hostile web on 127.0.0.1: every URL ends with bytes or exactly one reason."""

import io
import threading
import time
from collections import Counter

import pytest
from loopback import LoopbackHandler, LoopbackServer
from PIL import Image

from entitynet.fetch.fetcher import Fetcher, FetchOptions
from entitynet.fetch.policy import AddressPolicy, robots_allows, x_robots_opt_out
from entitynet.images.process import ImageRejected, process_image


def jpeg(w=320, h=240) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (30, 120, 200)).save(out, "JPEG")
    return out.getvalue()


JPEG = jpeg()
ROBOTS = b"User-agent: entitynet\nDisallow: /private-area/\n\nUser-agent: *\nAllow: /\n"


class HostileWeb:
    def __init__(self):
        self.hits: Counter = Counter()
        web = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                path = self.path
                web.hits[path] += 1
                n = web.hits[path]
                if path == "/robots.txt":
                    return self.send(200, ROBOTS, "text/plain")
                if path in ("/img.jpg", "/private-area/ok.jpg"):
                    return self.send(200, JPEG)
                if path == "/404":
                    return self.send(404, b"not found", "text/html")
                if path == "/flaky500":
                    return self.send(500, b"oops", "text/plain") if n == 1 else self.send(200, JPEG)
                if path == "/always500":
                    return self.send(503, b"down", "text/plain")
                if path == "/429":
                    return (
                        self.send(429, b"slow down", "text/plain", [("Retry-After", "1")])
                        if n == 1
                        else self.send(200, JPEG)
                    )
                if path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(JPEG)))
                    self.end_headers()
                    for b in JPEG[:20]:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(0.3)
                    return None
                if path == "/reset":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(JPEG)))
                    self.end_headers()
                    self.wfile.write(JPEG[:100])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return None
                if path == "/html":
                    return self.send(200, b"<html>hi</html>", "text/html")
                if path == "/html-as-jpeg":
                    return self.send(200, b"<html>pretending</html>", "image/jpeg")
                if path == "/big":
                    return self.send(200, b"", "image/jpeg", length=50 << 20)
                if path == "/bigchunked":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(40):
                        chunk = b"x" * 65536
                        try:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        except OSError:
                            return None
                    self.wfile.write(b"0\r\n\r\n")
                    return None
                if path in ("/loop", "/loop2"):
                    return self.send(
                        302, b"", "text/plain", [("Location", "/loop2" if path == "/loop" else "/loop")]
                    )
                if path == "/to-private":
                    return self.send(302, b"", "text/plain", [("Location", "http://10.255.255.1/x.jpg")])
                if path == "/to-metadata":
                    return self.send(
                        302, b"", "text/plain", [("Location", "http://169.254.169.254/latest/meta-data")]
                    )
                if path == "/to-img":
                    return self.send(301, b"", "text/plain", [("Location", "/img.jpg")])
                if path == "/noai":
                    return self.send(200, JPEG, headers=[("X-Robots-Tag", "noai")])
                if path == "/scoped-other":
                    return self.send(
                        200,
                        JPEG,
                        headers=[("X-Robots-Tag", "googlebot: noindex"), ("X-Robots-Tag", "nofollow")],
                    )
                if path == "/scoped-us":
                    return self.send(200, JPEG, headers=[("X-Robots-Tag", "entitynet: noimageai")])
                return self.send(404, b"", "text/plain")

        self.server = LoopbackServer(Handler)
        self.base = self.server.base

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def web():
    w = HostileWeb()
    yield w
    w.close()


def fetcher(**kw) -> Fetcher:
    kw.setdefault("address", AddressPolicy(allow_loopback=True))
    kw.setdefault("total_timeout", 3.0)
    kw.setdefault("read_timeout", 1.0)
    kw.setdefault("backoff", 0.05)
    kw.setdefault("max_bytes", 1 << 20)
    return Fetcher(FetchOptions(**kw))


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/img.jpg", None),
        ("/to-img", None),
        ("/flaky500", None),
        ("/scoped-other", None),
        ("/404", "http_404"),
        ("/always500", "http_5xx"),
        ("/html", "not_an_image"),
        ("/big", "too_large"),
        ("/bigchunked", "too_large"),
        ("/loop", "redirect_loop"),
        ("/to-private", "blocked_address"),
        ("/to-metadata", "blocked_address"),
        ("/noai", "opted_out"),
        ("/scoped-us", "opted_out"),
        ("/private-area/ok.jpg", "robots_disallowed"),
        ("/trickle", "timeout"),
        ("/reset", "connection_error"),
    ],
)
def test_every_url_gets_bytes_or_one_reason(web, path, reason):
    r = fetcher().fetch(web.base + path)
    assert r.reason == reason, (r.reason, r.detail)
    if reason is None:
        assert r.data == JPEG and r.ok
    else:
        assert r.data is None and not r.ok


def test_trickle_is_cut_at_the_total_deadline(web):
    t = time.monotonic()
    r = fetcher(total_timeout=1.5, read_timeout=5).fetch(web.base + "/trickle")
    assert r.reason == "timeout" and time.monotonic() - t < 2.5


def test_retry_after_is_honoured(web):
    t = time.monotonic()
    r = fetcher().fetch(web.base + "/429")
    assert r.ok and r.attempts == 2 and time.monotonic() - t >= 0.95


def test_html_served_as_jpeg_is_caught_by_decoding(web):
    r = fetcher().fetch(web.base + "/html-as-jpeg")
    assert r.ok
    with pytest.raises(ImageRejected) as e:
        process_image(r.data)
    assert e.value.reason == "not_an_image"


def test_loopback_is_refused_by_default_without_contact(web):
    before = sum(web.hits.values())
    for url in (web.base + "/img.jpg", web.base.replace("127.0.0.1", "localhost") + "/img.jpg"):
        r = Fetcher(FetchOptions(robots_txt=False)).fetch(url)
        assert r.reason == "blocked_address" and "loopback" in r.detail
    assert sum(web.hits.values()) == before  # the server never saw a request


def test_bad_urls(web, tmp_path):
    f = fetcher()
    assert f.fetch("ftp://example.org/x.jpg").reason == "bad_url"
    assert f.fetch("not a url").reason == "bad_url"
    img = tmp_path / "x.jpg"
    img.write_bytes(JPEG)
    assert f.fetch(img.as_uri()).reason == "bad_url"  # file URLs only when allowed
    local = fetcher(allow_file_urls=True)
    assert local.fetch(img.as_uri()).data == JPEG
    assert local.fetch((tmp_path / "missing.jpg").as_uri()).reason == "http_404"


def test_per_host_rate_limit(web):
    f = fetcher(per_host_rps=10, robots_txt=False)
    t = time.monotonic()
    for _ in range(5):
        assert f.fetch(web.base + "/img.jpg").ok
    assert time.monotonic() - t >= 0.38


def test_robots_txt_is_fetched_once_per_host(web):
    f = fetcher()
    before = web.hits["/robots.txt"]
    for _ in range(3):
        f.fetch(web.base + "/img.jpg")
    assert web.hits["/robots.txt"] - before == 1


def test_policy_functions():
    p = AddressPolicy()
    assert p.refusal("8.8.8.8") is None
    for blocked in (
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:10.0.0.1",
        "fd00:ec2::254",
        "0.0.0.0",
        "fe80::1",
        "100.100.100.200",
    ):
        assert p.refusal(blocked), blocked
    assert AddressPolicy(allow_private=True).refusal("10.0.0.1") is None
    assert AddressPolicy(allow_loopback=True).refusal("169.254.169.254")  # metadata never allowed
    assert x_robots_opt_out(["noai"], ["entitynet"]) == "noai"
    assert x_robots_opt_out(["NoImageIndex, nofollow"], ["entitynet"]) == "noimageindex"
    assert x_robots_opt_out(["otherbot: noai"], ["entitynet"]) is None
    assert x_robots_opt_out(["unavailable_after: 25 Jun 2010 15:00:00 PST"], ["entitynet"]) is None
    assert x_robots_opt_out(["noai"], ["entitynet"], disallowed=()) is None
    assert not robots_allows("User-agent: *\nDisallow: /", "entitynet", "http://a/x.jpg")
    assert robots_allows("", "entitynet", "http://a/x.jpg")


# ---------------------------------------------------------------- DNS answers, cached per worker


def test_resolver_caches_answers_and_failures_and_asks_once_per_host():
    import socket

    from entitynet.fetch.resolver import Resolver

    now = [0.0]
    asked = []

    def lookup(host, port, type=None):
        asked.append(host)
        time.sleep(0.05)  # slow enough that concurrent callers overlap
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port))] * 2

    r = Resolver(ttl=300, negative_ttl=30, lookup=lookup, clock=lambda: now[0])
    threads = [threading.Thread(target=r.resolve, args=("Images.test", 80)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert asked == ["Images.test"]  # eight threads, one question
    assert r.resolve("images.test", 80) == ["192.0.2.7"]  # case-insensitive, repeats dropped
    now[0] = 299.0
    r.resolve("images.test", 80)
    assert len(asked) == 1
    now[0] = 301.0  # past the TTL: asked again
    r.resolve("images.test", 80)
    assert len(asked) == 2
    for _ in range(3):
        with pytest.raises(socket.gaierror):
            r.resolve("nowhere.test", 80)
    assert asked.count("nowhere.test") == 1  # a failure is remembered too, for negative_ttl
    now[0] = 332.0
    with pytest.raises(socket.gaierror):
        r.resolve("nowhere.test", 80)
    assert asked.count("nowhere.test") == 2


def test_fetch_threads_share_one_dns_answer_and_the_guard_still_checks_it(web):
    import socket
    from concurrent.futures import ThreadPoolExecutor

    port = int(web.base.rsplit(":", 1)[1])
    asked = []

    def lookup(host, p, type=None):
        asked.append(host)
        address = "127.0.0.1" if host == "images.test" else "10.0.0.5"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, p))]

    f = fetcher(robots_txt=False)
    f.resolver._lookup = lookup
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(f.fetch, [f"http://images.test:{port}/img.jpg"] * 16))
    assert all(r.ok for r in results) and asked == ["images.test"]
    assert f.resolver.lookups == 1
    private = [f.fetch(f"http://intranet.test:{port}/img.jpg") for _ in range(2)]
    assert [r.reason for r in private] == ["blocked_address"] * 2 and asked.count("intranet.test") == 1
    with pytest.raises(Exception, match="--dns-ttl"):
        FetchOptions(dns_ttl=-1)


# ---------------------------------------------------------------- many requests on one event loop


def test_one_loop_holds_many_requests_within_the_host_and_total_limits():
    """64 fetches submitted at once to two hosts: the server sees at most `per_host_concurrency`
    per host and `in_flight` in all, and reaches those limits (the loop does not serialise); a
    slot with a share of 2 gets half the host's places; queued fetches do not time out while
    they wait for a place (the deadline starts with the fetch)."""
    from loopback_hosts import CountingHosts

    web = CountingHosts(hosts=2, delay=0.2)
    try:
        f = fetcher(per_host_concurrency=6, in_flight=10, robots_txt=False, total_timeout=1.0)
        futures = [f.submit(f.afetch(web.url(1 + i % 2, i))) for i in range(64)]
        results = [x.result() for x in futures]
        assert all(r.ok for r in results), {r.reason for r in results}  # 64 x 0.2 s / 10 > 1 s deadline
        assert max(web.peak.values()) <= 6 and sum(web.peak.values()) >= 10, web.peak
        assert f.peak_in_flight == 10
        web.peak.clear()
        host = "127.0.0.1"
        futures = [f.submit(f.afetch(web.url(1, 1000 + i), (host, 0), 2)) for i in range(12)]
        assert all(x.result().ok for x in futures)
        assert web.peak[host] == 3, web.peak  # 6 // 2
        f.close()
        assert f.fetch(web.url(2, 2000)).ok  # a closed fetcher starts a new loop when used again
    finally:
        web.close()
